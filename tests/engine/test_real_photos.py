"""The offline EfficientNet-Lite ensemble on real photos bundled by scikit-image.

Boxes were annotated by hand (fcnx.testing.photos). Photos whose object fills the frame (coffee,
camera) or is too thin for a square window (rocket, tripod) are used only where a square crop
can be judged fairly; see docs/efficientnet.md.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("skimage")

from fcnx.engine.cropper import Cropper
from fcnx.engine.ensemble import resize
from fcnx.method.metrics import box_iou
from fcnx.testing.photos import PHOTOS

pytestmark = pytest.mark.slow
NETS = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]


@pytest.fixture(scope="module")
def cropper():
    """The paper's square crops (the tight boxes come with every result too)."""
    return Cropper.from_nets(NETS, kernel=224, device="cpu", box="square")


def _box(result):
    box = result.boxes[0]
    return box, (box.x, box.y, box.w, box.h)


def _confidence(cropper, pixels: np.ndarray, category: str) -> float:
    """Mean probability of ``category`` over the nets for the whole of ``pixels`` squashed to the kernel."""
    tensor = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)[None]
    probs = cropper.ensemble.probabilities(resize(tensor, (cropper.ensemble.kernel,) * 2))
    return probs[0, :, cropper.category_index(category), 0, 0].mean().item()


@pytest.mark.parametrize("name", ["chelsea", "motorcycle", "astronaut_helmet"])
def test_box_covers_the_annotated_object(cropper, name):
    photo = PHOTOS[name]
    box, xywh = _box(cropper.crop_image(photo.load(), [photo.category]))
    assert box.found and box.votes == len(NETS)
    assert box_iou(xywh, photo.box) >= 0.5
    assert box_iou(box.tight, photo.box) >= max(0.5, box_iou(xywh, photo.box))  # the class maps fit it better


@pytest.mark.parametrize("name", ["motorcycle", "astronaut_shuttle", "astronaut_helmet", "rocket"])
def test_cropping_raises_the_ensembles_confidence(cropper, name):
    photo = PHOTOS[name]
    pixels = photo.load()
    _, (x, y, w, h) = _box(cropper.crop_image(pixels, [photo.category]))
    x, y, w, h = (round(v) for v in (x, y, w, h))
    whole = _confidence(cropper, pixels, photo.category)
    cropped = _confidence(cropper, pixels[y : y + h, x : x + w], photo.category)
    assert cropped > whole + 0.05, (whole, cropped)


def test_finds_an_object_pasted_at_a_known_place(cropper):
    from PIL import Image

    scene = PHOTOS["astronaut_helmet"].load().copy()
    cup = np.asarray(Image.fromarray(PHOTOS["coffee"].crop()).resize((150, 183), Image.BICUBIC))
    x, y = 60, 250
    scene[y : y + 183, x : x + 150] = cup
    box, xywh = _box(cropper.crop_image(scene, ["espresso"]))
    assert box.found
    assert box_iou(xywh, (x, y, 150, 183)) >= 0.5
    # the same cup pasted elsewhere moves the box with it
    moved = PHOTOS["astronaut_helmet"].load().copy()
    moved[20 : 20 + 183, 300 : 300 + 150] = cup
    _, xywh_moved = _box(cropper.crop_image(moved, ["espresso"]))
    assert box_iou(xywh_moved, (300, 20, 150, 183)) >= 0.5


def test_a_category_absent_from_the_photo_is_flagged(cropper):
    box, _ = _box(cropper.crop_image(PHOTOS["chelsea"].load(), ["espresso"]))
    assert not box.found and box.votes == 0


def test_auto_backend_gives_torchs_boxes_on_the_photos_at_food101_size(cropper):
    """Every bundled photo, long side 512 as in Food-101, its own category: ``--backend auto`` (ONNX Runtime
    on the CPU) chooses torch's level, cell, votes and boxes (exact ties aside: none here)."""
    pytest.importorskip("onnxruntime")
    from PIL import Image

    auto = Cropper.from_nets(NETS, kernel=224, device="cpu", box="square", backend="auto")
    assert auto.ensemble.backend == "onnxruntime"
    for photo in PHOTOS.values():
        image = Image.fromarray(photo.load())
        image.thumbnail((512, 512), Image.Resampling.BICUBIC)
        pixels = np.array(image)
        (want,) = cropper.crop_image(pixels, [photo.category]).boxes
        (got,) = auto.crop_image(pixels, [photo.category]).boxes
        assert (got.level, got.cell, got.votes, got.window, got.tight) == (
            want.level,
            want.cell,
            want.votes,
            want.window,
            want.tight,
        ), photo.name
        assert abs(got.confidence - want.confidence) < 1e-5
