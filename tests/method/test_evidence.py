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


def test_tight_box_is_the_connected_region_around_the_seeds_peak():
    heat = np.zeros((12, 16))
    heat[2:6, 3:9] = 0.8  # the object: columns 3-8, rows 2-5
    heat[3, 5] = 1.0  # its peak
    heat[8:11, 11:15] = 0.9  # another blob, not connected to the first
    seed = (0.0, 0.0, 16.0, 12.0)
    # lowest 0, peak 1.0, threshold 0.5: the first blob, not the second (it does not touch the peak)
    assert evidence.tight_box(heat, seed, 0.5) == (3.0, 2.0, 6.0, 4.0)
    # a seed holding only the second blob: its own peak and region
    assert evidence.tight_box(heat, (10.0, 7.0, 6.0, 5.0), 0.5) == (11.0, 8.0, 4.0, 3.0)
    # the region never leaves the seed
    assert evidence.tight_box(heat, (4.0, 0.0, 12.0, 12.0), 0.5) == (4.0, 2.0, 5.0, 4.0)
    # threshold above 0.8 of the way: the peak pixel alone
    assert evidence.tight_box(heat, seed, 0.9) == (5.0, 3.0, 1.0, 1.0)


def test_tight_box_thresholds_from_the_seeds_lowest_value_and_joins_diagonal_neighbours():
    heat = np.full((6, 6), 0.4)
    heat[1, 1] = heat[2, 2] = heat[3, 3] = 0.6  # a diagonal chain: one region with 8-neighbours
    # from 0.4 to 0.6, half way is 0.5: only the chain; a threshold from 0 would take everything
    assert evidence.tight_box(heat, (0.0, 0.0, 6.0, 6.0), 0.5) == (1.0, 1.0, 3.0, 3.0)
    # a flat seed: the whole seed; ties for the peak go to the first pixel
    assert evidence.tight_box(np.ones((4, 5)), (1.0, 1.0, 3.0, 2.0), 0.3) == (1.0, 1.0, 3.0, 2.0)
    with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\]"):
        evidence.tight_box(heat, (0.0, 0.0, 6.0, 6.0), 1.5)


def test_fused_window_averages_the_corners_of_strong_overlapping_windows():
    # one level of 1 x 3 cells, kernel 4, stride 2 on a 4 x 8 image: windows x = [0, 4), [2, 6), [4, 8)
    values = np.array([[0.2, 1.0, 0.8]])
    chosen = (2.0, 0.0, 4.0, 4.0)
    # share 0.7: the windows at x = 2 (1.0) and x = 4 (0.8); weights 1 and 0.8 ** 4 (power 4)
    fused = evidence.fused_window([values], [(4, 8)], (4, 8), 4, 2, chosen, share=0.7, overlap=0.3)
    w = 0.8**4
    x0 = (2 + w * 4) / (1 + w)
    assert fused == pytest.approx((x0, 0.0, 4.0, 4.0))
    # overlap 0.5: x = 4 overlaps the chosen window by 1/3 only: the chosen window alone
    assert evidence.fused_window([values], [(4, 8)], (4, 8), 4, 2, chosen, overlap=0.5) == pytest.approx(chosen)
    # nothing scores above 0: the chosen window unchanged
    zeros = np.zeros((1, 3))
    assert evidence.fused_window([zeros], [(4, 8)], (4, 8), 4, 2, chosen) == chosen


def test_tight_fuses_then_fits_the_finer_levels_evidence():
    size = (8, 8)
    coarse = np.array([[0.9]])  # level 0: one window over the whole image (kernel 4 at 4 x 4)
    fine = np.zeros((3, 3))  # level 1: kernel 4, stride 2 at 8 x 8: windows at 0, 2, 4 per axis
    fine[0, 0] = 0.9  # the object sits in the top-left window
    result = evidence.tight([coarse, fine], [(4, 4), (8, 8)], size, 4, 2, 1, (0.0, 0.0, 4.0, 4.0))
    # fused: the windows near (0, 0, 4, 4) scoring >= 0.7 * 0.9 are itself and (IoU 0.25 < 0.3) not the coarse one
    assert result.fused == pytest.approx((0.0, 0.0, 4.0, 4.0))
    # finer evidence (level 1 only) inside it: pixels 0-1 covered by window 0 only (0.9), 2-3 also by window 1 (0.45)
    assert result.evidence.shape == size
    assert result.evidence[0, :4].tolist() == pytest.approx([0.9, 0.9, 0.45, 0.45])
    assert result.evidence[2, 2] == pytest.approx(0.9 / 4)
    # from 0.225 to 0.9, 0.3 of the way is 0.4275: rows/columns 0-3 except the (2-3, 2-3) corner; its box is 4 x 4
    assert result.box == (0.0, 0.0, 4.0, 4.0)
    tighter = evidence.tight([coarse, fine], [(4, 4), (8, 8)], size, 4, 2, 1, (0.0, 0.0, 4.0, 4.0), threshold=0.8)
    assert tighter.box == (0.0, 0.0, 2.0, 2.0)


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
    # columns 0-3 of the image only in window 0 (1.0), 4-7 in both (0.5): the region above 0.65 is columns 0-3
    assert full.box == (0.0, 0.0, 4.0, 8.0) and small.box == (0.0, 0.0, 4.0, 8.0)
    assert small.object_map().shape == (4, 6) and small.object_map()[0].tolist() == [1, 1, 0, 0, 0, 0]
    resized = small.object_map((8, 12))
    assert resized.shape == (8, 12) and resized[0, :3].tolist() == [1, 1, 1] and resized[0, 6:].tolist() == [0] * 6
