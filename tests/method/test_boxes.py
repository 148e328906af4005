"""The box rules' table and the object box on hand-made pyramids: exact regions and boxes."""

from __future__ import annotations

import numpy as np
import pytest

from fcnx.method import boxes, metrics
from fcnx.method.evidence import ClassMap
from fcnx.method.selection import Level


def test_the_table_names_every_rule_once_with_its_needs():
    assert list(boxes.RULES) == ["square", "tight", "fitted", "object", "fitted-object"]
    assert [r.name for r in boxes.RULES.values() if r.pixels] == ["fitted", "fitted-object"]
    assert [r.name for r in boxes.RULES.values() if r.whole_view] == ["object", "fitted-object"]
    assert boxes.DEFAULT in boxes.RULES
    with pytest.raises(
        ValueError, match="unknown box 'round'; use one of square, tight, fitted, object, fitted-object"
    ):
        boxes.rule("round")


def test_grow_keeps_the_region_of_the_seed_above_a_share_of_its_value():
    heat = np.zeros((6, 8))
    heat[1:3, 1:4] = [[1.0, 0.5, 0.3], [0.6, 0.4, 0.2]]
    heat[4, 6] = 0.9  # another region: not connected to the seed
    assert boxes.grow(heat, 0.3, (1, 1)) == (1, 1, 4, 3)
    assert boxes.grow(heat, 0.45, (1, 1)) == (1, 1, 3, 3)  # 0.4, 0.3 and 0.2 drop out
    assert boxes.grow(heat, 0.5, (4, 6)) == (6, 4, 7, 5)


def test_pad_grows_a_box_by_a_share_of_its_sides_within_the_image_and_union_joins_two():
    assert boxes.pad_box((10.0, 20.0, 40.0, 20.0), 0.1, (100, 100)) == pytest.approx((6.0, 18.0, 48.0, 24.0))
    assert boxes.pad_box((2.0, 0.0, 40.0, 20.0), 0.1, (100, 44)) == pytest.approx((0.0, 0.0, 44.0, 22.0))
    assert boxes.union((0.0, 0.0, 2.0, 2.0), (1.0, 3.0, 4.0, 1.0)) == (0.0, 0.0, 5.0, 4.0)


def _pyramid(whole_prob: float) -> boxes.Pyramid:
    """A 64 x 96 image, kernel 32, stride 32: one level of 2 x 3 windows whose best cell is (0, 0), and the whole
    view (one window) with probability ``whole_prob``; the class maps (4 x 6 cells of 16 pixels at the level,
    2 x 2 at the whole view) see an object over the left two thirds of the image."""
    prob = np.array([[[0.9, 0.5, 0.1], [0.6, 0.4, 0.1]]])
    level = Level(prob, prob > 0.3)
    cells = np.zeros((4, 6))
    cells[:, :4] = [[1.0, 0.8, 0.6, 0.5]] * 4
    whole = np.array([[1.0, 0.0], [1.0, 0.0]])
    return boxes.Pyramid(
        (64, 96),
        32,
        32,
        [(64, 96), (32, 32)],
        [level, Level(np.full((1, 1, 1), whole_prob), np.ones((1, 1, 1), bool))],
        [[ClassMap(cells, (64, 96), 16, 8.0)], [ClassMap(whole, (32, 32), 16, 8.0)]],
        whole_view=True,
    )


def test_the_object_box_grows_over_the_object_where_the_whole_view_sees_it():
    found = _pyramid(0.8).select()
    assert found.window == (0.0, 0.0, 32.0, 32.0)
    assert boxes.whole_view_share(found) == pytest.approx(0.8 / 0.9)
    box = boxes.object_box(found, span=1.0, threshold=0.3, gate=0.5)
    # class evidence of the level and the whole view: high over columns 0-63 (bilinear from the cell centres)
    assert box[0] == 0.0 and box[1] == 0.0 and box[3] == 64.0
    assert 60.0 <= box[2] <= 80.0
    assert box[2] > found.tight.box[2]


def test_the_object_box_is_the_padded_tight_box_where_the_whole_view_is_unsure():
    found = _pyramid(0.1).select()
    tight = found.tight.box
    assert boxes.object_box(found, gate=0.5) == tight
    assert boxes.object_box(found, gate=0.5, pad=0.1) == boxes.pad_box(tight, 0.1, (64, 96))


def test_coverage_is_the_share_of_the_true_box_inside():
    truth = (0.0, 0.0, 10.0, 10.0)
    assert float(metrics.box_coverage((5.0, 0.0, 100.0, 100.0), truth)) == 0.5
    assert float(metrics.box_coverage((-5.0, -5.0, 100.0, 100.0), truth)) == 1.0
    assert metrics.box_coverage([[0, 0, 1, 1], [20, 20, 1, 1]], [truth, truth]).tolist() == [0.01, 0.0]


def _bright_object() -> np.ndarray:
    """The 64 x 96 image of :func:`_pyramid`: dark noise, a bright object at x 4-59, y 6-57."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 60, size=(64, 96, 3)).astype(np.uint8)
    pixels[6:58, 4:60] = rng.integers(200, 256, size=(52, 56, 3))
    return pixels


def test_the_fitted_object_box_fits_the_grown_box_to_the_object_where_the_whole_view_sees_it():
    pytest.importorskip("cv2")
    found = _pyramid(0.8).select()
    found.pixels = _bright_object()
    assert boxes.object_box(found, threshold=0.3, gate=0.75, snap=2.0) == (0.0, 0.0, 62.0, 64.0)
    # GrabCut finds the object's columns; the box spans the whole height (nothing above or below to learn from)
    assert boxes.fitted_object_box(found, pad=0.0) == (4.0, 0.0, 56.0, 64.0)
    # the default margin: 5 % of the sides on each edge, the height stays snapped to the borders
    assert boxes.fitted_object_box(found) == pytest.approx((1.2, 0.0, 61.6, 64.0))
    assert boxes.box("fitted-object", found) == boxes.fitted_object_box(found)


def test_the_fitted_object_box_is_the_padded_fitted_box_where_the_whole_view_is_unsure():
    pytest.importorskip("cv2")
    found = _pyramid(0.1).select()
    found.pixels = _bright_object()
    assert boxes.fitted_object_box(found) == pytest.approx((0.0, 0.0, 33.6, 33.6))  # tight (0, 0, 32, 32) + 5 %
    assert boxes.fitted_object_box(found, gate=0.1, pad=0.0) == (4.0, 0.0, 56.0, 64.0)
    with pytest.raises(ValueError, match="needs the image's pixels"):
        boxes.fitted_object_box(_pyramid(0.1).select())
