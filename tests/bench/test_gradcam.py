"""The Grad-CAM baseline (fcnx.bench.gradcam) and its run on the benchmark canvases (benchmarks/canvases_gradcam.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torch import nn

import fcnx_tiny
from fcnx.bench import localization
from fcnx.bench.gradcam import heat_box, target_layer
from fcnx.method import metrics

NETS = ["tiny_vgg", "tiny_resnet", "tiny_inception"]
DEMO = Path(fcnx_tiny.__file__).parent / "demo"

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def cams():
    pytest.importorskip("pytorch_grad_cam")
    from fcnx.bench.gradcam import GradCamEnsemble

    return {size: GradCamEnsemble.from_nets(NETS, at_image_size=size) for size in (False, True)}


def _two_blobs(second: float) -> np.ndarray:
    heat = np.zeros((40, 60), np.float32)
    heat[5:10, 10:20] = 1.0  # the peak, 50 cells
    heat[20:35, 30:50] = second  # 300 cells
    return heat


def test_heat_box_is_the_largest_region_at_half_the_peak():
    assert heat_box(_two_blobs(0.6)) == (30.0, 20.0, 20.0, 15.0)  # larger, though not the hottest
    assert heat_box(_two_blobs(0.4)) == (10.0, 5.0, 10.0, 5.0)  # under half the peak: only the hottest counts
    assert heat_box(_two_blobs(0.4), share=0.3) == (30.0, 20.0, 20.0, 15.0)
    assert heat_box(np.zeros((40, 60))) == (0.0, 0.0, 60.0, 40.0)  # no evidence: the whole map


def test_the_target_layer_is_the_trunk_else_the_last_convolution():
    from fcnx.engine.fcn import load_fcn

    for name in NETS:
        model = load_fcn(name, "pretrained").classifier
        assert target_layer(model) is model.features, name  # not a residual shortcut's or one branch's conv
    last = nn.Conv2d(8, 4, 1)
    assert target_layer(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), last, nn.AdaptiveAvgPool2d(1))) is last
    with pytest.raises(TypeError, match="no features trunk and no Conv2d"):
        target_layer(nn.Sequential(nn.Flatten(), nn.Linear(3, 2)))


def test_the_target_layer_of_efficientnet_lite_is_conv_head():
    pytest.importorskip("timm")
    from fcnx.backbones.registry import get_backbone

    model = get_backbone("efficientnet_lite0").build(1000, (), None)  # random init: no weights needed
    assert target_layer(model) is model.conv_head  # what benchmarks/real_photos.py always read


def test_grad_cam_maps_and_boxes_on_the_demo_canvases(cams):
    ious = {size: [] for size in cams}
    for canvas in localization.read_canvases(DEMO):
        pixels = np.asarray(Image.open(canvas.item.path).convert("RGB"))
        height, width = pixels.shape[:2]
        label = cams[False].classes.index(canvas.item.label)
        for size, cam in cams.items():
            heat = cam.heat(pixels, label)
            assert heat.shape == (height, width) and heat.min() >= 0 and heat.max() <= 1 + 1e-6
            x, y, w, h = box = cam.box(pixels, label)
            assert box == heat_box(heat) and x >= 0 and y >= 0 and x + w <= width and y + h <= height
            assert heat[int(y) : int(y + h), int(x) : int(x + w)].max() >= 0.5 * heat.max()
            probs = cam.probabilities(pixels)
            assert probs.shape == (10,) and abs(probs.sum() - 1) < 1e-5 and cam.top_class(pixels) == probs.argmax()
            ious[size].append(metrics.box_iou(box, canvas.truth))
    # squashed to the nets' 56 px the object is a few pixels wide: at the canvas's size Grad-CAM finds it far better
    assert np.mean(ious[True]) > np.mean(ious[False]) + 0.2


def test_the_canvas_benchmark_gives_what_fcnx_crop_gives(cams):
    sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
    import canvases_gradcam

    from fcnx.engine.cropper import Cropper

    cropper = Cropper.from_nets(NETS, kernel=56, device="cpu", max_scale=2.0)
    names = {False: "Grad-CAM ensemble", True: "Grad-CAM ensemble (canvas size)"}
    result = canvases_gradcam.run(DEMO, cropper, {names[k]: v for k, v in cams.items()}, progress=lambda _: None)
    assert result["summary"]["images"] == len(result["rows"]) == 10
    fitting = Cropper(cropper.ensemble, max_scale=2.0, box="fitted")
    for row in result["rows"]:
        path = DEMO / row["image"]
        labelled = cropper.crop_image(path, [row["label"]]).boxes[0]
        free = cropper.crop_image(path).boxes[0]  # no label: the ensemble's top class
        assert row["boxes"]["with"]["fitted"] == list(fitting.crop_image(path, [row["label"]]).boxes[0].fitted or ())
        assert row["boxes"]["free"]["fitted"] == list(fitting.crop_image(path).boxes[0].fitted or ())
        assert row["boxes"]["with"]["square"] == list(labelled.window) and row["boxes"]["with"]["tight"] == list(
            labelled.tight
        )
        assert row["boxes"]["free"]["square"] == list(free.window) and row["boxes"]["free"]["tight"] == list(free.tight)
        assert row["label_free"]["fcnx"] == free.category
    summary = result["summary"]["with"]
    assert set(summary) == set(canvases_gradcam.METHODS) and all(s["count"] == 10 for s in summary.values())
