"""Pyramid and box geometry of the crop engine, against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fcnx.method import geometry
from fcnx.method.selection import Level, select


def test_pyramid_of_a_400x610_image():
    scales = geometry.pyramid_scales(400, 610, 299)
    sizes = [geometry.scaled_size(400, 610, s, 299) for s in scales]
    # short side 299 * 1.2^k (rounded), k = 0..6 (1.2^6 = 2.986 <= 3 < 1.2^7)
    assert [h for h, _ in sizes] == [299, 359, 431, 517, 620, 744, 893]
    assert [w for _, w in sizes] == [456, 547, 657, 788, 946, 1135, 1362]
    assert [geometry.common_cells(h, 299, 32) for h, _ in sizes] == [1, 2, 5, 7, 11, 14, 19]


def test_box_of_a_cell_is_its_window_divided_by_the_exact_scale():
    scaled = geometry.scaled_size(400, 600, 299 / 400 * 1.2**2, 299)
    assert scaled == (431, 646)
    x, y, w, h = geometry.cell_to_box((3, 5), (400, 600), scaled, 299, 32)
    # window rows [96, 395), columns [160, 459) of the 431 x 646 image
    assert y == pytest.approx(96 * 400 / 431) and h == pytest.approx((395 - 96) * 400 / 431)
    assert x == pytest.approx(160 * 600 / 646) and w == pytest.approx((459 - 160) * 600 / 646)
    assert geometry.box_to_cell((x, y, w, h), (400, 600), scaled, 32) == (3, 5)
    assert geometry.pixel_box((x, y, w, h), (400, 600)) == (149, 89, 426, 367)


def test_first_level_of_a_square_image_covers_it_all():
    assert geometry.cell_to_box((0, 0), (512, 512), (299, 299), 299, 32) == (0.0, 0.0, 512.0, 512.0)


def test_tiny_and_elongated_images_are_upscaled_not_rejected():
    assert geometry.pyramid_scales(1, 1, 299)[0] == 299.0
    assert geometry.scaled_size(1, 1, 299.0, 299) == (299, 299)
    assert geometry.cell_to_box((0, 0), (1, 1), (299, 299), 299, 32) == (0.0, 0.0, 1.0, 1.0)
    box = geometry.cell_to_box((1, 1), (1, 1), (359, 359), 299, 32)
    assert box[0] == pytest.approx(32 / 359) and box[0] + box[2] == pytest.approx(331 / 359)
    assert geometry.pixel_box(box, (1, 1)) == (0, 0, 1, 1)
    # 20000 x 10 (width x height): the first level is 598000 x 299
    assert geometry.scaled_size(10, 20000, geometry.pyramid_scales(10, 20000, 299)[0], 299) == (299, 598000)


def test_pixel_box_rounds_half_up_and_keeps_one_pixel():
    assert geometry.pixel_box((0.5, 1.49, 2.0, 0.2), (10, 10)) == (1, 1, 3, 2)
    assert geometry.pixel_box((9.9, 9.9, 0.1, 0.1), (10, 10)) == (9, 9, 10, 10)


@settings(max_examples=300, deadline=None)
@given(
    height=st.integers(1, 4000),
    width=st.integers(1, 4000),
    kernel=st.integers(16, 400),
    stride=st.sampled_from([4, 8, 16, 32]),
    step=st.floats(1.05, 2.0),
    max_scale=st.floats(1.0, 4.0),
    level_pick=st.floats(0, 1),
    seed=st.integers(0, 2**32 - 1),
    nets=st.integers(1, 4),
)
def test_any_chosen_box_lies_in_the_image_is_deterministic_and_maps_back_to_its_cell(
    height, width, kernel, stride, step, max_scale, level_pick, seed, nets
):
    scales = geometry.pyramid_scales(height, width, kernel, step, max_scale)
    scale = scales[min(len(scales) - 1, int(level_pick * len(scales)))]
    scaled = geometry.scaled_size(height, width, scale, kernel)
    rows, cols = (geometry.common_cells(side, kernel, stride) for side in scaled)
    assert rows >= 1 and cols >= 1
    rows, cols = min(rows, 40), min(cols, 40)  # heatmap content on (a corner of) the grid
    rng = np.random.default_rng(seed)
    level = Level(prob=rng.random((nets, rows, cols)), vote=rng.random((nets, rows, cols)) < 0.3)
    first, again = select([level]), select([Level(level.prob.copy(), level.vote.copy())])
    assert (first.cell, first.votes, first.confidence) == (again.cell, again.votes, again.confidence)
    x, y, w, h = geometry.cell_to_box(first.cell, (height, width), scaled, kernel, stride)
    assert x >= 0 and y >= 0 and w > 0 and h > 0
    assert x + w <= width * (1 + 1e-12) and y + h <= height * (1 + 1e-12)
    assert geometry.box_to_cell((x, y, w, h), (height, width), scaled, stride) == first.cell
    x1, y1, x2, y2 = geometry.pixel_box((x, y, w, h), (height, width))
    assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
