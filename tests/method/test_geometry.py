"""The core's pure geometry, checked exactly against hand-computed values."""

import pytest

from fcnx.method import geometry


@pytest.mark.parametrize(
    ("stride", "offset", "d", "w"),
    [(32, 0, 9, 288), (32, 43, 8, 299), (32, -25, 10, 295), (32, -31, 10, 289), (8, 5, 3, 29)],
)
def test_w_min_and_pool_size_are_inverse(stride, offset, d, w):
    assert geometry.w_min(d, stride, offset) == w
    assert geometry.pool_size(w, stride, offset) == d
    assert geometry.pool_size(w + stride - 1, stride, offset) == d
    assert geometry.pool_size(w - 1, stride, offset) == d - 1 or d == 1


def test_paper_table_iii_at_common_kernel_299():
    # VGG 32D -> D=9, Inception 32D+43 -> D=8, Xception 32D-25 -> D=10
    assert [geometry.pool_size(299, 32, b) for b in (0, 43, -25)] == [9, 8, 10]


def test_pool_size_below_smallest_input_is_an_error():
    with pytest.raises(ValueError, match="below the smallest size 75"):
        geometry.pool_size(74, 32, 43)


def test_heatmap_side_counts_cells_beyond_the_kernel():
    assert geometry.heatmap_side(299, 299, 32, 43) == 1
    assert geometry.heatmap_side(330, 299, 32, 43) == 1
    assert geometry.heatmap_side(331, 299, 32, 43) == 2
    assert geometry.heatmap_side(299 + 5 * 32, 299, 32, 43) == 6
    assert geometry.heatmap_side(298, 299, 32, 43) == 0
    assert geometry.heatmap_side(10, 299, 32, 43) == 0


def test_every_net_has_at_least_the_common_cells():
    for side in range(299, 299 + 200):
        common = geometry.common_cells(side, 299, 32)
        for offset in (0, 43, -25, -31):
            assert geometry.heatmap_side(side, 299, 32, offset) >= common


def test_cell_window():
    assert geometry.cell_window(0, 299, 32) == (0, 299)
    assert geometry.cell_window(3, 299, 32) == (96, 395)


def test_formula_text():
    assert geometry.formula_text(32, 0) == "32D"
    assert geometry.formula_text(32, 43) == "32D+43"
    assert geometry.formula_text(32, -25) == "32D-25"


def test_pyramid_scales_start_at_kernel_and_stop_at_max():
    scales = geometry.pyramid_scales(400, 600, 299, step=1.2, max_scale=3.0)
    assert scales[0] == pytest.approx(299 / 400)
    assert [s / scales[0] for s in scales] == pytest.approx([1.2**k for k in range(7)])  # 1.2**6 = 2.99 <= 3
    assert geometry.pyramid_scales(400, 600, 299, 1.2, 1.0) == [pytest.approx(299 / 400)]


def test_pyramid_upscales_small_images():
    assert geometry.pyramid_scales(1, 1, 299)[0] == 299.0


def test_scaled_size_never_below_kernel():
    assert geometry.scaled_size(400, 601, 299 / 400, 299) == (299, 449)
    assert geometry.scaled_size(20000, 10, 29.9, 299) == (598000, 299)


def test_cell_to_box_maps_back_and_clips():
    # 400x600 image at scale 299/400 -> 299x448; cell (0, 2): x from 64 to 363 scaled px
    box = geometry.cell_to_box((0, 2), (400, 600), (299, 448), 299, 32)
    sx = 448 / 600
    assert box == pytest.approx((64 / sx, 0.0, 299 / sx, 400.0))
    x, _, w, _ = geometry.cell_to_box((0, 5), (400, 600), (299, 448), 299, 32)
    assert x + w == pytest.approx(600.0)  # clipped at the right edge
