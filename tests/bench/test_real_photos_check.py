"""The real-photo check (benchmarks/real_photos.py) with the targets of issue #14.

Slow: the default EfficientNet-Lite ensemble's pyramid and an ensemble Grad-CAM on 15 photos
(about 20 s a photo on one busy core). The issue's label-free target is not met yet: it is a
strict expected failure, so the day it is met the test says so. The fitted box (``--box fitted``)
reaches both; its figures are pinned too.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("skimage")
pytest.importorskip("pytorch_grad_cam")
sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))

import real_photos

from fcnx.method import boxes

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def summary():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = real_photos.run(real_photos.samples(8, 0), progress=lambda _: None)
    finally:
        torch.set_num_threads(threads)
    return result["summary"]["all"] | {"whole": result["summary"]["whole"]}


def test_the_set_is_seeded_and_the_pasted_boxes_lie_in_their_photos():
    a, b = real_photos.samples(8, 0), real_photos.samples(8, 0)
    assert [s.name for s in a] == [s.name for s in b] and all((s.pixels == t.pixels).all() for s, t in zip(a, b))
    assert [s.kind for s in a].count("pasted") == 8
    for s in a:
        x, y, w, h = s.truth
        assert x >= 0 and y >= 0 and x + w <= s.pixels.shape[1] and y + h <= s.pixels.shape[0]


def test_small_pastes_are_10_to_15_percent_of_the_short_side_and_leave_the_others_unchanged():
    plain, with_small = real_photos.samples(8, 0), real_photos.samples(8, 0, small=4)
    assert [s.name for s in with_small[: len(plain)]] == [s.name for s in plain]
    small = with_small[len(plain) :]
    assert [s.kind for s in small] == ["small"] * 4
    for s in small:
        assert 0.10 <= max(s.truth[2:]) / min(s.pixels.shape[:2]) <= 0.15 + 1 / min(s.pixels.shape[:2])


def test_label_free_categories_may_name_the_photos_other_annotated_objects():
    by_name = {s.name: s for s in real_photos.samples(8, 0)}
    whole = by_name["astronaut_shuttle"]
    helmet = real_photos.PHOTOS["astronaut_helmet"]
    assert whole.others == ((helmet.accept, tuple(map(float, helmet.box))),)
    assert whole.named("crash helmet") == tuple(map(float, helmet.box))
    assert whole.named("space shuttle") == whole.truth and whole.named("tabby") is None
    # a background object stays listed while at most half of its box is under the paste
    cat = real_photos.PHOTOS["chelsea"].box
    assert real_photos._others("chelsea", "", (0.0, 0.0, cat[2] / 2, float(cat[3]))) != ()
    assert real_photos._others("chelsea", "", (0.0, 0.0, cat[2] * 0.6, float(cat[3]))) == ()


def test_fcnx_boxes_beat_grad_cam_and_the_blind_boxes(summary):
    with_category, label_free = summary["with"], summary["free"]
    for side in (with_category, label_free):
        assert side["tight"]["mean_iou"] > side["Grad-CAM ensemble"]["mean_iou"]
        assert side["tight"]["mean_iou"] > max(side["centred box"]["mean_iou"], side["whole image"]["mean_iou"])
    assert with_category["tight"]["mean_iou"] >= with_category["square"]["mean_iou"]


def test_issue_target_tight_with_the_category(summary):
    # issue #14's target, met since the class maps are weighted by their cells (0.663 on these photos)
    assert summary["with"]["tight"]["mean_iou"] >= 0.65


@pytest.mark.xfail(strict=True, reason="issue #14's target, not met: tight without a category reaches 0.475 mean IoU")
def test_issue_target_tight_label_free(summary):
    assert summary["free"]["tight"]["mean_iou"] >= 0.5


def test_the_fitted_box_fits_better_and_reaches_both_targets(summary):
    with_category, label_free = summary["with"], summary["free"]
    assert with_category["fitted"]["mean_iou"] >= 0.75 and label_free["fitted"]["mean_iou"] >= 0.5
    assert with_category["fitted"]["iou>=0.7"] >= with_category["tight"]["iou>=0.7"] + 0.25  # 73 % vs 40 %
    # on the whole photos (no pasted rectangle's edge to find) it is no better than the tight box: not the default
    whole = summary["whole"]["with"]
    assert whole["tight"]["mean_iou"] - 0.05 <= whole["fitted"]["mean_iou"] <= whole["tight"]["mean_iou"]


def test_the_sweep_tries_every_combination_of_a_rules_parameters():
    methods = real_photos.sweep_methods("fitted-object")
    grid = real_photos.SWEEP["fitted-object"]
    assert len(methods) == len(grid["gate"]) * len(grid["threshold"]) * len(grid["pad"]) * len(grid["snap"]) == 108
    name = "fitted-object gate=0.5 threshold=0.3 pad=0.05 snap=0.8"
    chosen = methods[name]
    assert chosen.func is boxes.fitted_object_box
    # the parameters the docs name as chosen are the rule's defaults
    assert chosen.keywords == {
        "gate": boxes.FITTED_GATE,
        "threshold": boxes.FITTED_THRESHOLD,
        "pad": boxes.FITTED_PAD,
        "snap": boxes.OBJECT_SNAP,
    }
