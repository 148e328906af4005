"""The fcnx-tiny plugin package (plugins/fcnx-tiny): registration by entry point, measured
receptive-size formulas at their boundaries, exact convolutionalization."""

from __future__ import annotations

import importlib.metadata

import pytest
import torch
from click.testing import CliRunner

from fcnx import errors
from fcnx.backbones import registry
from fcnx.cli import cli
from fcnx.engine.fcn import load_fcn
from fcnx.testing import formula_boundaries, random_checkpoint

TINY = ("tiny_vgg", "tiny_resnet", "tiny_inception", "tiny_mobilenet")
CLASSES = [f"c{i}" for i in range(5)]


pytestmark = pytest.mark.usefixtures("one_thread")


def test_registered_by_entry_point():
    eps = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="fcnx")}
    assert eps.get("tiny") == "fcnx_tiny", "install the plugin: pip install -e plugins/fcnx-tiny"
    registry.refresh()
    specs = {spec.name: spec for spec in registry.list_backbones("tiny_*")}
    assert set(specs) == set(TINY)
    assert {s.plugin for s in specs.values()} == {"tiny"}
    assert {s.formula() for s in specs.values()} == {"8D+28", "8D-7", "8D+9", "8D-5"}
    result = CliRunner().invoke(cli, ["list-backbones", "tiny_*"])
    assert result.exit_code == 0, result.output
    for name, formula in (
        ("tiny_vgg", "8D+28"),
        ("tiny_resnet", "8D-7"),
        ("tiny_inception", "8D+9"),
        ("tiny_mobilenet", "8D-5"),
    ):
        assert name in result.output and formula in result.output


@pytest.mark.parametrize("name", TINY)
def test_formula_boundaries(name):
    """W_min(D)-1 gives D-1 cells, W_min(D) and W_min(D)+stride-1 give D, W_min(D)+stride gives D+1."""
    spec = registry.get_backbone(name)
    model = spec.build(len(CLASSES), (), None)
    kernel = spec.default_size
    kernel_pool = spec.pool_size(kernel)

    def side(w: int) -> int:
        with torch.no_grad():
            return model.features(torch.zeros(1, 3, w, w)).shape[-1]

    for d in (1, 2, 3, 5):
        w = spec.w_min(d)
        assert side(w) == d and side(w + spec.stride - 1) == d, (name, d)
        assert side(w + spec.stride) == d + 1, (name, d)
        if d > 1:
            assert side(w - 1) == d - 1, (name, d)
        # heatmap sides of the FCN made for the default kernel
        if d >= kernel_pool:
            assert spec.heatmap_side(w, kernel) == d - kernel_pool + 1
            assert spec.heatmap_side(w - 1, kernel) == d - kernel_pool
    if spec.padding == "valid":  # below W_min(1) a valid net has no output at all
        with pytest.raises(RuntimeError):
            side(spec.w_min(1) - 1)


@pytest.mark.parametrize("name", TINY)
def test_convolutionalized_exactly(name, tmp_path):
    spec = registry.get_backbone(name)
    kernel = spec.default_size
    weights = random_checkpoint(tmp_path / f"{name}.safetensors", name, CLASSES, input_size=kernel, seed=1)
    fcn = load_fcn(name, str(weights))
    assert (fcn.kernel, fcn.classes) == (kernel, CLASSES)
    pixels = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, kernel, kernel, generator=pixels) * 255
    with torch.no_grad():
        expected = fcn.classifier(fcn.normalize(images))
        got = fcn(images)
    assert got.shape == (2, len(CLASSES), 1, 1)
    assert (got[:, :, 0, 0] - expected).abs().max().item() <= 1e-5
    assert expected.std().item() > 1e-3  # calibrated weights give logits that differ
    # larger inputs: the heatmap shape follows the formula; for tiny_vgg (no padding anywhere) the
    # top-left cell is the classifier on the top-left kernel window (padded layers see neighbours there)
    height, width = spec.w_min(spec.pool_size(kernel) + 3), spec.w_min(spec.pool_size(kernel) + 5) + spec.stride - 1
    big = torch.rand(1, 3, height, width, generator=pixels) * 255
    with torch.no_grad():
        heat = fcn(big)
        corner = fcn.classifier(fcn.normalize(big[:, :, :kernel, :kernel]))
    assert tuple(heat.shape[2:]) == spec.heatmap_shape(height, width, kernel) == (4, 6)
    if name == "tiny_vgg":
        assert (heat[:, :, 0, 0] - corner).abs().max().item() <= 1e-4
    # the FCN's heatmap sides at the formula's boundaries
    sizes, expected = formula_boundaries(spec, fcn.pool)
    with torch.no_grad():
        got_sides = [fcn(torch.zeros(1, 3, side, side)).shape[-1] for side in sizes]
    assert got_sides == expected


def test_shipped_weights_load_by_tag_and_strict_loading(tmp_path, monkeypatch):
    import fcnx_tiny
    from fcnx.backbones import checkpoint
    from fcnx.engine.fcn import trained_size

    for tag in ("pretrained", "fashion-bench"):
        fcn = load_fcn("tiny_vgg", tag)
        shipped = fcnx_tiny.WEIGHTS / "tiny_vgg.safetensors"
        assert fcn.classes == checkpoint.read_meta(shipped).classes and fcn.kernel == 56
        state = checkpoint.read_tensors(shipped)
        assert all(torch.equal(v, state[k]) for k, v in fcn.classifier.state_dict().items())
    assert trained_size("tiny_vgg") == 56
    monkeypatch.setattr(fcnx_tiny, "WEIGHTS", tmp_path / "gone")
    with pytest.raises(errors.FcnxError, match=r"the shipped weights .* are missing"):
        load_fcn("tiny_vgg", "pretrained")
    spec = registry.get_backbone("tiny_vgg")
    other = random_checkpoint(tmp_path / "resnet.safetensors", "tiny_resnet", CLASSES, input_size=56)
    with pytest.raises(errors.WeightsError, match="does not fit this architecture"):
        spec.load_weights(spec.build(len(CLASSES), (), None), other)


def test_hidden_head_convolutionalized(tmp_path):
    weights = random_checkpoint(tmp_path / "h.safetensors", "tiny_inception", CLASSES, input_size=56, head=(32,))
    fcn = load_fcn("tiny_inception", str(weights))
    images = torch.rand(2, 3, 56, 56, generator=torch.Generator().manual_seed(2)) * 255
    with torch.no_grad():
        diff = fcn(images)[:, :, 0, 0] - fcn.classifier(fcn.normalize(images))
    assert diff.abs().max().item() <= 1e-5


def test_demo_canvases_crop_offline_with_the_shipped_weights(tmp_path):
    """The README's main job: no --weights, no --kernel; each canvas cropped for its own label, near its true box."""
    import json
    from pathlib import Path

    import fcnx_tiny
    from fcnx.method.metrics import box_iou, centred_boxes

    demo = Path(fcnx_tiny.__file__).parent / "demo"
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli,
        [
            "crop",
            "--nets",
            "tiny_vgg,tiny_resnet,tiny_inception",
            "--gallery",
            str(demo),
            "-o",
            str(out),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "at kernel 56" in result.output and (out / "gallery.html").is_file()
    truth = json.loads((demo / "boxes.json").read_text())
    records = [json.loads(line) for line in (out / "boxes.jsonl").read_text().splitlines()]
    assert sorted(r["file"] for r in records) == sorted(f"images/{key}" for key in truth)
    ious, centred = [], []
    for r in records:
        _, label, name = r["file"].split("/")
        assert r["category"] == label and (out / r["crop"]).is_file()
        true_box = truth[f"{label}/{name}"]
        ious.append(float(box_iou([r["x"], r["y"], r["w"], r["h"]], true_box)))
        side = min(r["width"], r["height"])  # the usual centre crop: the centred square of the short side
        centred.append(float(box_iou(centred_boxes([[r["height"], r["width"]]], [side, side])[0], true_box)))
    assert sum(ious) / 10 > 0.25 and sum(centred) / 10 < 0.15, (ious, centred)


def test_training_from_pretrained_starts_from_the_shipped_weights():
    """`fcnx train --net tiny_vgg --weights pretrained` continues the shipped checkpoint (same classes: same head)."""
    import fcnx_tiny
    from fcnx.backbones import checkpoint
    from fcnx.training import finetune

    shipped = fcnx_tiny.WEIGHTS / "tiny_vgg.safetensors"
    classes = checkpoint.read_meta(shipped).classes
    model, _ = finetune.initial_model(registry.get_backbone("tiny_vgg"), classes, (), "pretrained")
    state = checkpoint.read_tensors(shipped)
    assert model.state_dict().keys() == state.keys()
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
