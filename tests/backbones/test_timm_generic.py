"""Any timm CNN as ``timm/<model>``: the measured formula holds on the FCN, the FCN equals the
classifier at the kernel, the measurement is cached, and non-CNNs are refused in one line.

Random weights at small sizes; shapes on torch's meta device.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import timm
import torch
from click.testing import CliRunner
from PIL import Image

import fcnx_timm
from fcnx.backbones import probe, registry
from fcnx.backbones.convolutionalize import FoldedFCN
from fcnx.cli import cli
from fcnx.engine.fcn import load_fcn
from fcnx.errors import UsageError
from fcnx.testing import formula_boundaries, random_checkpoint
from fcnx_timm import generic

#: one small model per timm CNN family (docs/backbones.md lists them with their formulas)
FAMILIES = {
    "resnet": "resnet18",
    "convnext": "convnext_atto",
    "regnet": "regnety_002",
    "efficientnet": "efficientnet_b0",
    "mobilenetv3": "mobilenetv3_small_050",
    "mobilenetv2": "mobilenetv2_050",
    "densenet": "densenet121",
    "ghostnet": "ghostnet_050",
    "rexnet": "rexnet_100",
    "dpn": "dpn48b",
    "vovnet": "ese_vovnet19b_slim_dw",
    "resnest": "resnest14d",
    "repvgg": "repvgg_a0",
    "lcnet": "lcnet_050",
    "fbnet": "fbnetc_100",
    "selecsls": "selecsls42b",  # stride 64
    "convmixer": "convmixer_768_32",  # stride 7
    "mixnet": "mixnet_s",
    "darknet": "darknet17",
    "byobnet": "gernet_s",
}
#: heavier families, run with the slow tests
SLOW_FAMILIES = {
    "resnetv2": "resnetv2_50",
    "cspnet": "cspresnet50",
    "res2net": "res2net50_14w_8s",
    "nfnet": "nf_regnet_b0",
    "edgenext": "edgenext_xx_small",
    "fastvit": "fastvit_t8",
    "hgnet": "hgnetv2_b0",
    "xception": "xception41",
    "efficientnetv2": "tf_efficientnetv2_b0",
    "inception_v4": "inception_v4",
    "sknet": "skresnet18",
}
#: the built-in aliases' formulas, as they were declared before the generic path (docs/backbones.md)
PINNED = {
    "vgg16": (32, 0),
    "vgg19": (32, 0),
    "inception_v3": (32, 43),
    "inception_resnet_v2": (32, 43),
    "xception": (32, -25),
    "resnet50": (32, -31),
}
CLASSES = ["a", "b", "c"]


@pytest.fixture(autouse=True)
def measurement_cache(tmp_path_factory, monkeypatch):
    """One fresh measurement cache for the module; resolved specs forgotten after each test."""
    monkeypatch.setenv("FCNX_CACHE", str(tmp_path_factory.getbasetemp() / "fcnx-cache"))
    yield
    registry.refresh()


def _measured_formula_holds_on_the_fcn(model: str) -> None:
    """The spec's measured formula on the FCN itself (meta device): boundary sides give the promised cells.

    Resolving the spec measured the FCN against the classifier too (a random init at the kernel);
    the cached record must say it is exact.
    """
    spec = registry.get_backbone(f"timm/{model}")
    record = probe.cached_record(generic.namespace(), model)
    assert record is not None and "error" not in record and probe.is_exact(record["max_abs_diff"], record["scale"])
    d0 = generic.EXACT_POOL
    with torch.device("meta"):
        net = spec.convolutionalize(spec.build(3, (), None), d0).eval()
    sizes, expected = formula_boundaries(spec, d0)
    with torch.no_grad():
        sides = [net(torch.empty(1, 3, s, s + spec.stride, device="meta")).shape[-2] for s in sizes]
    assert sides == expected


def _fcn_equals_classifier(tmp_path, model: str, head: tuple[int, ...] = ()) -> None:
    """A calibrated random checkpoint, loaded as users do, gives the classifier's logits at the kernel."""
    spec = registry.get_backbone(f"timm/{model}")
    kernel = spec.w_min(generic.EXACT_POOL)
    path = random_checkpoint(tmp_path / "net.safetensors", spec.name, CLASSES, input_size=kernel, head=head)
    fcn = load_fcn(spec.name, path)
    pixels = torch.rand(2, 3, kernel, kernel, generator=torch.Generator().manual_seed(1)) * 255
    with torch.inference_mode():
        want, got = fcn.classifier(fcn.normalize(pixels)), fcn(pixels)
    assert got.shape == (2, len(CLASSES), 1, 1)
    assert want.abs().max() > 1e-3  # a meaningful comparison, not zeros against zeros
    assert (got[:, :, 0, 0] - want).abs().max().item() <= 1e-4


@pytest.mark.parametrize("model", FAMILIES.values(), ids=FAMILIES.keys())
def test_timm_cnn_formula_is_measured_and_its_fcn_exact(one_thread, model):
    _measured_formula_holds_on_the_fcn(model)


@pytest.mark.slow
@pytest.mark.parametrize("model", SLOW_FAMILIES.values(), ids=SLOW_FAMILIES.keys())
def test_heavier_timm_cnn_formula_is_measured_and_its_fcn_exact(one_thread, model):
    _measured_formula_holds_on_the_fcn(model)


@pytest.mark.parametrize(
    ("model", "head"),
    [("resnet18", ()), ("convnext_atto", (16, 8)), ("mobilenetv3_small_050", (16, 8)), ("densenet121", ())],
)
def test_loaded_checkpoint_fcn_equals_classifier(tmp_path, one_thread, model, head):
    _fcn_equals_classifier(tmp_path, model, head)


@pytest.mark.slow
# not ConvMixer: calibrated at its 21-pixel kernel its random logits reach 1e5, beyond float32's 1e-4 resolution
@pytest.mark.parametrize("model", [m for m in FAMILIES.values() if m not in ("resnet18", "convmixer_768_32")])
def test_loaded_checkpoint_fcn_equals_classifier_every_family(tmp_path, one_thread, model):
    _fcn_equals_classifier(tmp_path, model)


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n == "inception_resnet_v2" else n for n in PINNED]
)
def test_builtin_aliases_are_the_generic_path_with_their_measured_formula(name):
    spec = registry.get_backbone(name)
    arch = fcnx_timm.ARCHS[name][0]
    with torch.device("meta"):
        model = timm.create_model(arch, num_classes=3).eval()
    assert (
        probe.measure_formula(lambda w: generic._feature_side(model, w)) == PINNED[name] == (spec.stride, spec.offset)
    )
    assert isinstance(spec.convolutionalize(model, spec.pool_size(spec.default_size)), FoldedFCN)


def test_max_pooled_heads_slide_a_max_pool(one_thread):
    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=3, global_pool="max").eval()
    fcn = fcnx_timm.convolutionalize(model, 3).eval()
    x = torch.randn(1, 3, 65, 97)
    with torch.inference_mode():
        assert fcn.kind == "max" and fcn(x).shape == (1, 3, 1, 2)
        assert (fcn(x[:, :, :, :65])[:, :, 0, 0] - model(x[:, :, :, :65])).abs().max() <= 1e-5


def test_a_global_pool_without_a_sliding_form_is_refused():
    with torch.device("meta"):
        model = timm.create_model("resnet18", num_classes=3, global_pool="catavgmax")
    with pytest.raises(ValueError, match="global pool 'catavgmax' has no sliding-window form"):
        generic.global_pool_kind(model)


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        ("vit_tiny_patch16_224", "forward_features gives 1 x 197 x 192 tokens, not an N x C x H x W feature map"),
        ("swin_tiny_patch4_window7_224", "forward_features gives NHWC features (a windowed transformer)"),
        ("resnet50_clip", "has no global average/max pool (timm SelectAdaptivePool2d)"),
        ("dla34", "it runs at some input sides only, not at"),
    ],
)
def test_models_that_cannot_be_convolutionalized_get_one_line_why(model, reason):
    result = CliRunner().invoke(cli, ["info", f"timm/{model}"])
    assert result.exit_code != 0
    (line,) = result.output.strip().splitlines()
    assert line.startswith(f"Error: timm model {model!r} cannot be convolutionalized: ") and reason in line


def test_unknown_timm_model_suggests_close_names():
    with pytest.raises(UsageError, match=r"unknown timm model 'resnet5O' \(did you mean: resnet50"):
        registry.get_backbone("timm/resnet5O")


def test_measurement_is_cached_and_reused(monkeypatch, one_thread):
    spec = registry.get_backbone("timm/resnet18")
    record = json.loads((probe.cache_dir() / generic.namespace() / "resnet18.json").read_text())
    assert (record["stride"], record["offset"]) == (spec.stride, spec.offset) == (32, -31)
    assert probe.is_exact(record["max_abs_diff"], record["scale"]) and record["kernel"] == spec.w_min(3)
    registry.refresh()

    def no_measuring(name):
        raise AssertionError("measured again")

    monkeypatch.setattr(generic, "measure", no_measuring)
    assert registry.get_backbone("timm/resnet18.a1_in1k").formula() == "32D-31"  # a tag shares its arch's record


def test_spec_follows_timm_pretrained_cfg_and_imagenet_tags(one_thread):
    spec = registry.get_backbone("timm/convnext_atto.d2_in1k")
    cfg = timm.models.get_pretrained_cfg("convnext_atto.d2_in1k")
    assert spec.pretrained[0] == "convnext_atto.d2_in1k" and spec.plugin == "timm"
    assert (spec.default_size, spec.preprocess.mean, spec.preprocess.std) == (cfg.input_size[-1], cfg.mean, cfg.std)
    tags = generic.imagenet_tags("convnext_tiny")
    assert tags and all(timm.models.get_pretrained_cfg(t).num_classes == 1000 for t in tags)
    assert "convnext_tiny.fb_in22k" not in tags  # 21841 classes: not what --weights pretrained promises


def test_list_backbones_all_timm_shows_what_is_measured(one_thread):
    registry.get_backbone("timm/resnet18")
    result = CliRunner().invoke(cli, ["list-backbones", "--all-timm", "resnet1[08]"])
    assert result.exit_code == 0
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:]}
    assert set(rows) == {f"timm/{name}" for name in timm.list_models("resnet1[08]")}
    assert rows["timm/resnet18"][1:3] == ["32D-31", "224"] and rows["timm/resnet18"][-1] == "ok"
    data = json.loads(CliRunner().invoke(cli, ["list-backbones", "--all-timm", "resnet18", "--json"]).stdout)
    assert data["timm_models"][0]["formula"] == "32D-31" and data["timm_models"][0]["status"] == "ok"
    assert (
        CliRunner().invoke(cli, ["list-backbones", "--all-timm", "nonet*"]).stdout == "no timm model matches 'nonet*'\n"
    )


def test_crop_runs_an_ensemble_of_generic_timm_nets(tmp_path, one_thread):
    first = random_checkpoint(tmp_path / "r18.safetensors", "timm/resnet18", ["bag", "shoe"], input_size=65)
    second = random_checkpoint(tmp_path / "rg.safetensors", "timm/regnety_002", ["shoe", "bag"], input_size=65)
    image = tmp_path / "in" / "photo.png"
    image.parent.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (80, 96, 3), dtype=np.uint8)).save(image)
    nets = ["--nets", "timm/resnet18,timm/regnety_002", "--weights", f"timm/resnet18={first}"]
    argv = ["crop", *nets, "--weights", f"timm/regnety_002={second}", "--category", "bag", "--workers", "0"]
    result = CliRunner().invoke(cli, [*argv, "--max-scale", "1.2", str(image), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "nets timm/resnet18, timm/regnety_002 at kernel 65" in result.output
    (row,) = [json.loads(line) for line in (tmp_path / "out" / "boxes.jsonl").read_text().splitlines()]
    assert row["category"] == "bag" and set(row["net_scores"]) == {"timm/resnet18", "timm/regnety_002"}
