"""Evidence maps and tight boxes on hand-made heatmaps: exact pixels, windows and boxes."""

from __future__ import annotations

import numpy as np
import pytest

from fcnx.method import evidence, geometry


def test_coverage_puts_each_pixel_centre_in_the_windows_around_it():
    # kernel 4, stride 3 on 10 pixels at scale 1: windows [0, 4), [3, 7), [6, 10)
    cover = evidence.coverage(3, 10, 10, 4, 3)
    assert cover.shape == (10, 3)
    assert [np.flatnonzero(row).tolist() for row in cover] == [[0], [0], [0], [0, 1], [1], [1], [1, 2], [2], [2], [2]]


def test_coverage_scales_windows_and_stretches_the_last_to_the_border():
    # image side 21 shown at 10 pixels (s = 10/21): windows [0, 8.4), [6.3, 14.7), [12.6, 21)
    cover = evidence.coverage(3, 21, 10, 4, 3)
    assert np.flatnonzero(cover[:, 0]).tolist() == list(range(0, 8))
    assert np.flatnonzero(cover[:, 1]).tolist() == list(range(6, 15))  # centre 14.5 < 14.7
    assert np.flatnonzero(cover[:, 2]).tolist() == list(range(13, 21))  # centre 12.5 < 12.6
    # 11 pixels at scale 1: the third window [6, 10) reaches pixel 10
    assert evidence.coverage(3, 11, 11, 4, 3)[10].tolist() == [False, False, True]


def test_level_map_is_the_mean_of_the_windows_covering_each_pixel():
    values = np.array([[0.9, 0.0, 0.3]])
    heat = evidence.level_map(values, (4, 10), (4, 10), 4, 3)
    assert heat.shape == (4, 10)
    expected = [0.9, 0.9, 0.9, 0.45, 0.0, 0.0, 0.15, 0.3, 0.3, 0.3]
    for row in heat:
        assert row.tolist() == pytest.approx(expected)


def test_evidence_map_averages_levels_with_their_weights():
    size = (4, 10)
    fine = np.array([[0.9, 0.0, 0.3]])  # windows of 4 at stride 3
    coarse = np.array([[0.6]])  # one window of 10 (kernel 4 on an image shown at 4 pixels)
    plain = evidence.evidence_map([fine, coarse], [(4, 10), (4, 4)], size, 4, 3)
    assert plain[0].tolist() == pytest.approx([(v + 0.6) / 2 for v in [0.9, 0.9, 0.9, 0.45, 0, 0, 0.15, 0.3, 0.3, 0.3]])
    weighted = evidence.evidence_map([fine, coarse], [(4, 10), (4, 4)], size, 4, 3, weights=[3, 1])
    assert weighted[0, 0] == pytest.approx((3 * 0.9 + 0.6) / 4)
    with pytest.raises(ValueError, match="one scaled size per level"):
        evidence.evidence_map([fine], [], size, 4, 3)
    with pytest.raises(ValueError, match="not all zero"):
        evidence.evidence_map([fine], [(4, 10)], size, 4, 3, weights=[0])


def test_windows_are_the_cell_boxes_of_geometry():
    size, scaled = (37, 53), (45, 66)
    boxes = evidence.windows((2, 3), size, scaled, 32, 8)
    expected = [geometry.cell_to_box((i, j), size, scaled, 32, 8) for i in range(2) for j in range(3)]
    np.testing.assert_allclose(boxes, expected, rtol=0, atol=1e-12)


def test_weighted_quantile_is_the_first_value_whose_cumulative_weight_reaches_the_share():
    values, weights = np.array([3.0, 1.0, 2.0]), np.array([1.0, 1.0, 2.0])  # sorted: 1 (1/4), 2 (3/4), 3 (4/4)
    got = [evidence.weighted_quantile(values, weights, q) for q in (0.0, 0.25, 0.26, 0.75, 0.8, 1.0)]
    assert got == [1.0, 1.0, 2.0, 2.0, 3.0, 3.0]


def test_agreed_window_takes_weighted_quantiles_of_the_strong_windows_edges():
    # one level of 1 x 3 cells, kernel 4, stride 2 on a 4 x 8 image: windows x = [0, 4), [2, 6), [4, 8)
    values = np.array([[0.2, 0.9, 1.0]])
    chosen = (2.0, 0.0, 4.0, 4.0)
    # strong (>= 0.7 x 1.0, IoU >= 0.3 with the chosen): x = 2 (weight 0.9 ** 4 = 0.6561) and x = 4 (weight 1);
    # left edges 2, 4 reach 0.396 and 1 of the weight: quantile 0.6 -> 4; right edges 6, 8: quantile 0.4 -> 8
    assert evidence.agreed_window([values], [(4, 8)], (4, 8), 4, 2, chosen) == (4.0, 0.0, 4.0, 4.0)
    # quantile 0.3: left 2, right (0.7) 8: the union of both
    assert evidence.agreed_window([values], [(4, 8)], (4, 8), 4, 2, chosen, quantile=0.3) == (2.0, 0.0, 6.0, 4.0)
    # windows [0, 4) and [4, 8) alone: at quantile 1 their edges cross (left 4, right 4): the chosen window
    apart = np.array([[1.0, 0.0, 1.0]])
    assert evidence.agreed_window([apart], [(4, 8)], (4, 8), 4, 2, chosen, quantile=1.0) == chosen
    assert evidence.agreed_window([np.zeros((1, 3))], [(4, 8)], (4, 8), 4, 2, chosen) == chosen
    with pytest.raises(ValueError, match=r"quantile must be in \[0, 1\]"):
        evidence.agreed_window([values], [(4, 8)], (4, 8), 4, 2, chosen, quantile=1.5)


def test_tight_gives_the_agreed_window_and_the_finer_levels_evidence():
    size = (8, 8)
    coarse = np.array([[0.9]])  # level 0: one window over the whole image (kernel 4 at 4 x 4)
    fine = np.zeros((3, 3))  # level 1: kernel 4, stride 2 at 8 x 8: windows at 0, 2, 4 per axis
    fine[0, 0] = 0.9  # the object sits in the top-left window
    result = evidence.tight([coarse, fine], [(4, 4), (8, 8)], size, 4, 2, 1, (0.0, 0.0, 4.0, 4.0))
    # the windows near (0, 0, 4, 4) scoring >= 0.7 * 0.9 are itself and (IoU 0.25 < 0.3) not the coarse one
    assert result.box == (0.0, 0.0, 4.0, 4.0)
    # finer evidence (level 1 only): pixels 0-1 covered by window 0 only (0.9), 2-3 also by window 1 (0.45)
    assert result.evidence.shape == size
    assert result.evidence[0, :4].tolist() == pytest.approx([0.9, 0.9, 0.45, 0.45])
    assert result.evidence[2, 2] == pytest.approx(0.9 / 4)
    # two strong windows side by side at level 1: the box is where they agree, in both axes
    fine[0, 1] = 1.0  # window x = [2, 6), y = [0, 4): weights 0.6561 and 1
    both = evidence.tight([coarse, fine], [(4, 4), (8, 8)], size, 4, 2, 1, (0.0, 0.0, 4.0, 4.0))
    assert both.box == (2.0, 0.0, 4.0, 4.0)


def test_object_map_is_the_seeds_evidence_above_its_floor_and_zero_outside():
    heat = np.full((4, 6), 0.2)
    heat[1, 2], heat[2, 3] = 0.6, 1.0
    heat[0, 5] = 5.0  # outside the seed: ignored
    got = evidence.object_map(heat, (1.0, 0.0, 4.0, 4.0))  # columns 1-4
    expected = np.zeros((4, 6))
    expected[1, 2], expected[2, 3] = 0.5, 1.0
    np.testing.assert_allclose(got, expected)
    assert not evidence.object_map(np.ones((3, 3)), (0.0, 0.0, 3.0, 3.0)).any()


def test_tight_works_on_large_images_at_the_evidence_side_and_answers_in_image_pixels():
    # 1 x 2 cells of kernel 4, stride 2 on an image of 8 x 12 shown at 4 x 6 (scale 0.5): windows of 8 pixels
    values = [np.array([[1.0, 0.0]])]
    small = evidence.tight(values, [(4, 6)], (8, 12), 4, 2, 0, (0.0, 0.0, 8.0, 8.0), max_side=6)
    full = evidence.tight(values, [(4, 6)], (8, 12), 4, 2, 0, (0.0, 0.0, 8.0, 8.0))
    assert small.evidence.shape == (4, 6) and full.evidence.shape == (8, 12)
    assert small.factor == (0.5, 0.5) and full.factor == (1.0, 1.0)
    # window 0 alone is strong: the box is that window, in the image's pixels either way
    assert full.box == (0.0, 0.0, 8.0, 8.0) and small.box == (0.0, 0.0, 8.0, 8.0)
    assert small.object_map().shape == (4, 6) and small.object_map()[0].tolist() == [1, 1, 0, 0, 0, 0]
    resized = small.object_map((8, 12))
    assert resized.shape == (8, 12) and resized[0, :3].tolist() == [1, 1, 1] and resized[0, 6:].tolist() == [0] * 6


def test_interpolation_weights_lie_between_the_cell_centres_and_stay_flat_beyond_them():
    # 3 cells centred at 1, 3, 5 (stride 2, origin 1) of a 6-pixel side, seen at 6 pixels
    weights = evidence.interpolation(3, 6, 6, 2, 1.0)
    expected = [[1, 0, 0], [0.75, 0.25, 0], [0.25, 0.75, 0], [0, 0.75, 0.25], [0, 0.25, 0.75], [0, 0, 1]]
    np.testing.assert_allclose(weights, expected)
    # the same cells seen on a 3-pixel image: pixel centres 0.5, 1.5, 2.5 sit at 1, 3, 5 of the input
    np.testing.assert_allclose(evidence.interpolation(3, 3, 6, 2, 1.0), np.eye(3))


def test_class_map_image_is_bilinear_between_cell_centres():
    values = np.array([[0.0, 2.0, 4.0], [6.0, 8.0, 10.0]])  # rows centred at 1, 3; columns at 1, 3, 5
    image = evidence.class_map_image(evidence.ClassMap(values, (4, 6), 2, 1.0), (4, 6))
    assert image[0].tolist() == pytest.approx([0.0, 0.5, 1.5, 2.5, 3.5, 4.0])
    assert image[:, 0].tolist() == pytest.approx([0.0, 1.5, 4.5, 6.0])
    with pytest.raises(ValueError, match="h x w"):
        evidence.class_map_image(evidence.ClassMap(np.zeros(3), (4, 6), 2, 1.0), (4, 6))


def test_class_evidence_scales_each_map_to_0_1_and_averages_them_by_cells():
    ramp = evidence.ClassMap(np.array([[1.0, 3.0]]), (2, 4), 2, 1.0)  # columns centred at 1, 3
    flat = evidence.ClassMap(np.full((1, 2), 7.0), (2, 4), 2, 1.0)
    heat = evidence.class_evidence([ramp, flat], (2, 4))
    # the ramp at pixels 0-3: 1, 1.5, 2.5, 3 -> 0, 0.25, 0.75, 1; the flat map counts 0
    assert heat[0].tolist() == pytest.approx([0.0, 0.125, 0.375, 0.5])
    assert heat[0].tolist() == heat[1].tolist()
    # a map of 4 cells (a finer level: cells centred at 0.5, 1.5, 2.5, 3.5) weighs twice the ramp's 2
    fine = evidence.ClassMap(np.array([[4.0, 3.0, 2.0, 1.0]]), (2, 4), 1, 0.5)  # 1, 2/3, 1/3, 0 once scaled
    heat = evidence.class_evidence([ramp, fine], (2, 4))
    scaled_ramp, scaled_fine = np.array([0.0, 0.25, 0.75, 1.0]), np.array([1.0, 2 / 3, 1 / 3, 0.0])
    assert heat[0].tolist() == pytest.approx(((2 * scaled_ramp + 4 * scaled_fine) / 6).tolist())
    with pytest.raises(ValueError, match="at least one"):
        evidence.class_evidence([], (2, 4))


def test_region_box_takes_the_region_over_the_seed_else_the_strongest():
    heat = np.zeros((10, 12))
    heat[1:4, 1:5] = 1.0  # region A: x 1-4, y 1-3
    heat[6:9, 7:11] = 0.6  # region B: x 7-10, y 6-8, above 0.5 of the peak
    heat[5, 0] = 0.3  # below the threshold
    assert evidence.region_box(heat, 0.5, (6.0, 5.0, 4.0, 4.0)) == (7.0, 6.0, 4.0, 3.0)  # the seed covers B
    assert evidence.region_box(heat, 0.5, (0.0, 0.0, 3.0, 3.0)) == (1.0, 1.0, 4.0, 3.0)  # ... A
    # a seed over neither: the region of the largest summed heat (A: 12, B: 7.2)
    assert evidence.region_box(heat, 0.5, (11.0, 0.0, 1.0, 1.0)) == (1.0, 1.0, 4.0, 3.0)
    assert evidence.region_box(heat, 0.25, (0.0, 4.0, 2.0, 2.0)) == (0.0, 5.0, 1.0, 1.0)  # the low pixel counts now
    assert evidence.region_box(np.zeros((4, 4)), 0.5, (1.0, 1.0, 2.0, 2.0)) == (1.0, 1.0, 2.0, 2.0)
    with pytest.raises(ValueError, match="threshold"):
        evidence.region_box(heat, 0.0, (0.0, 0.0, 1.0, 1.0))


def test_share_inside_is_the_share_of_a_box_inside_another():
    assert evidence.share_inside((0.0, 0.0, 2.0, 2.0), (0.0, 0.0, 4.0, 4.0)) == 1.0
    assert evidence.share_inside((3.0, 1.0, 2.0, 2.0), (0.0, 0.0, 4.0, 4.0)) == 0.5
    assert evidence.share_inside((5.0, 5.0, 1.0, 1.0), (0.0, 0.0, 4.0, 4.0)) == 0.0
    assert evidence.share_inside((1.0, 1.0, 0.0, 2.0), (0.0, 0.0, 4.0, 4.0)) == 0.0


def test_tight_takes_the_class_maps_region_where_it_agrees_with_the_windows():
    size = (8, 8)
    coarse = np.array([[0.9]])
    fine = np.zeros((3, 3))
    fine[0, 0] = 0.9  # the windows agree on (0, 0, 4, 4), as in the test above
    peak = np.zeros((4, 4))  # class map cells centred at 1, 3, 5, 7 of the 8 x 8 input
    peak[0, 0:2] = 1.0  # the object: cells (0, 0) and (0, 1), i.e. pixels x 0-3 and y 0-1 above half the peak
    maps = [[], [evidence.ClassMap(peak, (8, 8), 2, 1.0)]]
    result = evidence.tight([coarse, fine], [(4, 4), (8, 8)], size, 4, 2, 1, (0.0, 0.0, 4.0, 4.0), class_maps=maps)
    assert result.whole and result.box == (0.0, 0.0, 4.0, 2.0)  # IoU 0.5 with the windows' box
    assert result.object_map().max() == 1.0 and result.object_map()[0, :5].tolist() == pytest.approx(
        [1, 1, 1, 0.75, 0.25]
    )
    # a narrow region inside the windows' box (IoU 0.25 < AGREE, all of it inside): the class maps' region
    corner = np.zeros((4, 4))
    corner[0, 0] = 1.0  # pixels 0-1 of both axes above 0.45 of the peak (1, 0.75, 0.25, 0)
    inner = [[], [evidence.ClassMap(corner, (8, 8), 2, 1.0)]]
    taken = evidence.tight([coarse, fine], [(4, 4), (8, 8)], size, 4, 2, 1, (0.0, 0.0, 4.0, 4.0), class_maps=inner)
    assert taken.whole and taken.box == (0.0, 0.0, 2.0, 2.0)
    # the class maps' region far from the windows' box (IoU < AGREE, outside it): the windows' box, as without class maps
    far = np.zeros((4, 4))
    far[3, 3] = 1.0
    apart = [[], [evidence.ClassMap(far, (8, 8), 2, 1.0)]]
    kept = evidence.tight([coarse, fine], [(4, 4), (8, 8)], size, 4, 2, 1, (0.0, 0.0, 4.0, 4.0), class_maps=apart)
    assert not kept.whole and kept.box == (0.0, 0.0, 4.0, 4.0)
    # class maps of coarser levels only do not count
    coarser = [[evidence.ClassMap(peak, (4, 4), 2, 1.0)], []]
    plain = evidence.tight([coarse, fine], [(4, 4), (8, 8)], size, 4, 2, 1, (0.0, 0.0, 4.0, 4.0), class_maps=coarser)
    assert not plain.whole and plain.box == (0.0, 0.0, 4.0, 4.0)


def test_tight_uses_the_class_maps_of_levels_up_to_map_span_times_the_chosen_scale():
    size, chosen = (8, 8), (0.0, 0.0, 4.0, 4.0)
    fine = np.zeros((3, 3))
    fine[0, 0] = 0.9  # the windows agree on (0, 0, 4, 4) at level 1, as above
    levels = [np.array([[0.9]]), fine, np.zeros((7, 7)), np.zeros((15, 15))]
    scaled = [(4, 4), (8, 8), (16, 16), (32, 32)]  # level 2 is 2x level 1's scale, level 3 4x (> MAP_SPAN)
    peak = np.zeros((4, 4))
    peak[0, 0:2] = 1.0  # cells centred at pixels 1, 3, 5, 7 of the image at either level: region (0, 0, 4, 2)
    at_2x = [[], [], [evidence.ClassMap(peak, (16, 16), 4, 2.0)], []]
    at_4x = [[], [], [], [evidence.ClassMap(peak, (32, 32), 8, 4.0)]]
    taken = evidence.tight(levels, scaled, size, 4, 2, 1, chosen, class_maps=at_2x)
    assert evidence.MAP_SPAN == 3.0 and taken.whole and taken.box == (0.0, 0.0, 4.0, 2.0)
    beyond = evidence.tight(levels, scaled, size, 4, 2, 1, chosen, class_maps=at_4x)
    assert not beyond.whole and beyond.box == (0.0, 0.0, 4.0, 4.0)
