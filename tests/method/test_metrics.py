"""Benchmark metrics: exact hand-computed values and properties of IoU."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fcnx.method import metrics


def test_iou_hand_computed():
    # overlap 5 x 5 = 25; union 100 + 100 - 25 = 175
    assert metrics.box_iou((0, 0, 10, 10), (5, 5, 10, 10)) == pytest.approx(25 / 175)
    # one inside the other: 4 / 16
    assert metrics.box_iou((2, 2, 2, 2), (0, 0, 4, 4)) == pytest.approx(0.25)
    # touching edges and disjoint boxes do not overlap
    assert metrics.box_iou((0, 0, 10, 10), (10, 0, 10, 10)) == 0.0
    assert metrics.box_iou((0, 0, 1, 1), (50, 50, 3, 3)) == 0.0
    # zero-area boxes
    assert metrics.box_iou((3, 3, 0, 0), (3, 3, 0, 0)) == 0.0
    # element-wise over arrays
    np.testing.assert_allclose(
        metrics.box_iou([[0, 0, 10, 10], [0, 0, 2, 4]], [[0, 0, 10, 10], [0, 2, 2, 4]]), [1.0, 4 / 12]
    )


def test_iou_rejects_bad_boxes():
    with pytest.raises(ValueError, match="4 numbers"):
        metrics.box_iou((0, 0, 1), (0, 0, 1, 1))
    with pytest.raises(ValueError, match=">= 0"):
        metrics.box_iou((0, 0, -1, 1), (0, 0, 1, 1))


box = st.tuples(st.integers(-50, 50), st.integers(-50, 50), st.integers(0, 60), st.integers(0, 60))


@settings(max_examples=200, deadline=None)
@given(box, box)
def test_iou_symmetric_and_bounded(a, b):
    ab, ba = float(metrics.box_iou(a, b)), float(metrics.box_iou(b, a))
    assert ab == ba
    assert 0.0 <= ab <= 1.0


@settings(max_examples=100, deadline=None)
@given(box)
def test_iou_identical_boxes_is_one(a):
    expected = 1.0 if a[2] * a[3] > 0 else 0.0
    assert float(metrics.box_iou(a, a)) == expected


def test_box_accuracy_hand_computed():
    truth = [[0, 0, 10, 10]] * 4
    # IoUs: 1.0, 25/175 = 0.1429, 0.5 (half the box: 50 / 100), 0.64 (8 x 8 inside: 64 / 100)
    pred = [[0, 0, 10, 10], [5, 5, 10, 10], [0, 0, 5, 10], [1, 1, 8, 8]]
    acc = metrics.box_accuracy(pred, truth)
    assert acc.count == 4
    assert acc.mean_iou == pytest.approx((1 + 25 / 175 + 0.5 + 0.64) / 4)
    assert acc.at == {0.3: 0.75, 0.5: 0.75, 0.7: 0.25}
    assert acc.maxboxacc == pytest.approx((0.75 + 0.75 + 0.25) / 3)
    assert acc.as_dict()["acc@0.7"] == 0.25
    # coverage: 1, 25 / 100, 50 / 100, 64 / 100; only the first keeps >= 90 % of the true box
    assert acc.coverage == pytest.approx((1 + 0.25 + 0.5 + 0.64) / 4) and acc.keeps == 0.25
    assert acc.as_dict()["keeps"] == 0.25


def test_centred_boxes():
    boxes = metrics.centred_boxes([[100, 200], [50, 50]], (40, 20))
    np.testing.assert_array_equal(boxes, [[80, 40, 40, 20], [5, 15, 40, 20]])
    # sides larger than the image are clipped to it
    np.testing.assert_array_equal(metrics.centred_boxes([[30, 60]], [[100, 10]]), [[0, 10, 60, 10]])


def test_random_boxes_seeded_and_inside():
    sizes = np.array([[100, 200]] * 50)
    a = metrics.random_boxes(sizes, (40, 20), seed=3)
    np.testing.assert_array_equal(a, metrics.random_boxes(sizes, (40, 20), seed=3))
    assert not np.array_equal(a, metrics.random_boxes(sizes, (40, 20), seed=4))
    assert np.all(a[:, 0] >= 0) and np.all(a[:, 0] + a[:, 2] <= 200)
    assert np.all(a[:, 1] >= 0) and np.all(a[:, 1] + a[:, 3] <= 100)
    assert np.all(a[:, 2:] == [40, 20])


def test_detection_scores():
    d = metrics.detection_scores(["a", "b", "c", "d"], ["b", "d", "e"])
    assert (d.precision, d.recall, d.found, d.suspects, d.planted) == (0.5, pytest.approx(2 / 3), 2, 4, 3)
    assert metrics.detection_scores([], ["x"]).precision == 0.0
    assert metrics.detection_scores(["x"], []).recall == 1.0


def test_precision_at_k_and_average_precision_of_a_ranking():
    ranked = ["a", "x", "b", "y", "z"]  # planted a, b, c: found at ranks 1 and 3, c never listed
    assert metrics.precision_at_k(ranked, ["a", "b", "c"], 3) == pytest.approx(2 / 3)
    assert metrics.precision_at_k(ranked, ["a", "b", "c"], 10) == pytest.approx(2 / 10)  # short list: misses
    assert metrics.average_precision(ranked, ["a", "b", "c"]) == pytest.approx((1 / 1 + 2 / 3 + 0) / 3)
    assert metrics.average_precision(["a", "b"], ["a", "b"]) == 1.0
    with pytest.raises(ValueError, match="no planted"):
        metrics.average_precision(ranked, [])
    with pytest.raises(ValueError, match="k must be"):
        metrics.precision_at_k(ranked, ["a"], 0)


def test_top_k_accuracy():
    scores = [[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5], [0.4, 0.4, 0.2]]
    labels = [1, 1, 0, 1]
    # top-1: row0 right, row1 wrong, row2 wrong, row3 tie 0/1 -> class 0, wrong
    assert metrics.top_k_accuracy(scores, labels, 1) == 0.25
    # top-2: row0 {1,2} yes, row1 {0,1} yes, row2 {2,1} no, row3 {0,1} yes
    assert metrics.top_k_accuracy(scores, labels, 2) == 0.75
    assert metrics.top_k_accuracy(scores, labels, 3) == 1.0
    with pytest.raises(ValueError, match="k must be"):
        metrics.top_k_accuracy(scores, labels, 4)


def test_map_boxes_follow_wsolevaluation():
    heat = np.zeros((10, 12))
    heat[2:5, 3:7] = 1.0  # rows 2-4, columns 3-6
    heat[8, 0] = 0.6  # a second region, below 0.7
    # columns 3 .. 6 -> inclusive span 3 .. 7 (OpenCV's x + w read as inclusive): 5 pixels; rows 2 .. 5: 4
    np.testing.assert_array_equal(metrics.map_boxes(heat, 0.7), [[3, 2, 5, 4]])
    np.testing.assert_array_equal(metrics.map_boxes(heat, 0.5), [[3, 2, 5, 4], [0, 8, 2, 2]])
    # a region at the border is clipped to W - 1 / H - 1
    edge = np.zeros((6, 6))
    edge[3:, 4:] = 1.0
    np.testing.assert_array_equal(metrics.map_boxes(edge, 0.5), [[4, 3, 2, 3]])
    # a flat map has no pixel above the threshold: the one-pixel box at the origin
    np.testing.assert_array_equal(metrics.map_boxes(np.zeros((4, 4)), 0.5), [[0, 0, 1, 1]])
    assert metrics.normalize_map([[2.0, 4.0], [3.0, 2.0]]).tolist() == [[0.0, 1.0], [0.5, 0.0]]
    assert metrics.normalize_map(np.ones((2, 2))).tolist() == [[0.0, 0.0], [0.0, 0.0]]


def test_maxboxacc_v2_takes_the_best_threshold_per_iou_threshold():
    a = np.zeros((10, 10))
    a[2:6, 2:6] = 1.0  # a 4 x 4 core
    a[1:7, 1:7] += 0.5  # in a 6 x 6 halo
    a = a / a.max()
    b = a.copy()
    truth = [[1, 1, 5, 5], [2, 2, 3, 3]]
    # threshold 0.2 (halo and core): box 1 .. 7 inclusive (7 x 7): IoU 25/49 with the first truth, 9/49 with the second
    # threshold 0.5 (core only): box 2 .. 6 inclusive (5 x 5): IoU 16/34 with the first, 9/25 with the second
    acc = metrics.maxboxacc_v2([a, b], truth, thresholds=[0.2, 0.5])
    assert acc.at[0.3] == 1.0 and acc.best_threshold[0.3] == 0.5  # 16/34 and 9/25 >= 0.3; 9/49 < 0.3
    assert acc.at[0.5] == 0.5 and acc.best_threshold[0.5] == 0.2  # 25/49 >= 0.5 only at the halo, first threshold
    assert acc.at[0.7] == 0.0
    assert acc.maxboxacc == pytest.approx(0.5) and acc.count == 2
