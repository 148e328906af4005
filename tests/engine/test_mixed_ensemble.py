"""Ensembles of nets with other kernels or strides: each net on its own resize, resampled on the first net's grid."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_backbones import random_tiny_checkpoint

from fcnx.engine.cropper import Cropper
from fcnx.engine.ensemble import Ensemble, load_ensemble, resize
from fcnx.engine.fcn import load_fcn
from fcnx.errors import UsageError
from fcnx.io.decoding import load_rgb
from fcnx.io.discovery import discover
from fcnx.jobs.scoring import classify_batch, squash
from fcnx.method import geometry
from fcnx.method.selection import Level, select

CLASSES = ["apple", "bread", "cake", "dumpling", "egg"]


def noise(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """``1 x 3 x H x W`` blocks of random colours: neighbouring windows see different content."""
    blocks = np.random.default_rng(seed).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    image = np.array(Image.fromarray(blocks).resize((width, height), Image.Resampling.NEAREST))
    return torch.from_numpy(image).permute(2, 0, 1)[None]


@pytest.fixture
def nets(tmp_path, tiny_registry):
    """Random-weight tiny nets by name: tiny0 (32D) twice, with other seeds, and tiny_s16 (16D, stride 16)."""

    def load(name: str, kernel: int, seed: int = 0):
        path = random_tiny_checkpoint(tmp_path / f"{name}-{seed}.safetensors", name, CLASSES, seed=seed)
        return load_fcn(name, path, kernel=kernel)

    return load


def classifier_on(fcn, scaled: torch.Tensor, top: int, left: int) -> torch.Tensor:
    """The plain classifier's softmax on the ``fcn.kernel`` window at ``(top, left)`` of ``scaled``."""
    window = scaled[:, :, top : top + fcn.kernel, left : left + fcn.kernel]
    assert window.shape[-2:] == (fcn.kernel, fcn.kernel)
    with torch.inference_mode():
        return fcn.classifier(fcn.normalize(window)).softmax(dim=1)[0]


def test_the_reference_is_the_finest_grid_on_the_image_and_the_first_of_equals(nets):
    assert Ensemble([nets("tiny0", 64), nets("tiny0", 128, seed=1)]).reference == 1  # 32/128 < 32/64
    assert Ensemble([nets("tiny0", 64), nets("tiny_s16", 64, seed=1)]).reference == 1  # 16/64 < 32/64
    assert Ensemble([nets("tiny0", 64), nets("tiny_s16", 32, seed=1)]).reference == 0  # 32/64 = 16/32
    assert not Ensemble([nets("tiny0", 64), nets("tiny0", 64, seed=1)]).mixed
    chosen = Ensemble([nets("tiny0", 64), nets("tiny0", 128, seed=1)], reference=0)
    assert (chosen.reference, chosen.kernel) == (0, 64)
    with pytest.raises(UsageError, match="reference net 2 is out of range: the ensemble has 2 nets"):
        Ensemble([nets("tiny0", 64), nets("tiny0", 128, seed=1)], reference=2)


def test_a_net_at_half_the_kernel_sees_the_original_at_half_the_size_on_the_same_windows(nets):
    small, large = nets("tiny0", 64), nets("tiny0", 128, seed=1)
    ensemble = Ensemble([small, large])
    assert ensemble.mixed and (ensemble.reference, ensemble.kernel, ensemble.stride) == (1, 128, 32)
    pixels, size = noise(100, 130), (320, 448)
    assert ensemble.input_sizes(size) == [(160, 224), (320, 448)]
    probs = ensemble.probabilities_at(pixels, size)
    assert probs.shape == (1, 2, len(CLASSES), 7, 11)  # the reference grid: common_cells(320 / 448, 128, 32)
    small_input, large_input = resize(pixels, (160, 224)), resize(pixels, size)  # both from the original
    for i in range(7):
        for j in range(11):
            # reference cell (i, j): window [32i, 32i + 128) of the level, [16i, 16i + 64) of the small input:
            # the small net's cell (i / 2, j / 2), between two cells for odd i or j
            expected = classifier_on(large, large_input, 32 * i, 32 * j)
            assert torch.allclose(probs[0, 1, :, i, j], expected, atol=1e-5)
            expected = sum(
                wy * wx * classifier_on(small, small_input, 32 * m, 32 * n)
                for m, wy in _between(i / 2, 4, "bilinear")
                for n, wx in _between(j / 2, 6, "bilinear")
            )
            assert torch.allclose(probs[0, 0, :, i, j], expected, atol=1e-5), (i, j)
    assert torch.allclose(
        probs[0, 0, :, 0:7:2, 0:11:2],
        torch.stack(
            [
                torch.stack([classifier_on(small, small_input, 32 * m, 32 * n) for n in range(6)], dim=1)
                for m in range(4)
            ],
            dim=1,
        ),
        atol=1e-5,
    )  # even cells: exactly the small net's own


def test_a_net_at_three_quarters_of_the_kernel_is_interpolated_between_its_cells(nets):
    small, large = nets("tiny0", 96), nets("tiny0", 128, seed=1)
    for align in ("bilinear", "nearest"):
        ensemble = Ensemble([small, large], align=align)
        pixels, size = noise(100, 130, seed=2), (320, 448)
        assert ensemble.input_sizes(size)[0] == (240, 336)
        probs = ensemble.probabilities_at(pixels, size)[0, 0]
        scaled = resize(pixels, (240, 336))
        cells = geometry.common_cells(240, 96, 32), geometry.common_cells(336, 96, 32)
        assert cells == (5, 8) and probs.shape[-2:] == (7, 11)
        # reference cell i is centred at 32 i + 64 of the level, 24 i + 48 of the net's input: its cell 0.75 i
        for i in range(7):
            for j in range(11):
                expected = sum(
                    wy * wx * classifier_on(small, scaled, 32 * m, 32 * n)
                    for m, wy in _between(0.75 * i, cells[0], align)
                    for n, wx in _between(0.75 * j, cells[1], align)
                )
                assert torch.allclose(probs[:, i, j], expected, atol=1e-5), (align, i, j)
        assert torch.allclose(probs.sum(dim=0), torch.ones(7, 11))


def _between(position: float, cells: int, align: str) -> list[tuple[int, float]]:
    """The net's cells and weights at ``position``, clamped to its last cell."""
    position = min(position, cells - 1)
    if align == "nearest":
        return [(math.floor(position + 0.5), 1.0)]
    low = math.floor(position)
    return [(low, 1 - (position - low))] + ([(low + 1, position - low)] if position > low else [])


def test_a_stride_32_net_beside_a_stride_16_one_fills_every_second_cell_and_halfway_between(nets):
    coarse, fine = nets("tiny0", 64), nets("tiny_s16", 64, seed=1)
    assert fine.spec.stride == 16
    ensemble = Ensemble([coarse, fine])
    pixels, size = noise(100, 130, seed=3), (160, 224)
    assert ensemble.reference == 1 and ensemble.input_sizes(size) == [size, size]
    probs = ensemble.probabilities_at(pixels, size)
    assert probs.shape[-2:] == (7, 11)
    scaled = resize(pixels, size)
    for i in range(7):
        for j in range(11):
            assert torch.allclose(probs[0, 1, :, i, j], classifier_on(fine, scaled, 16 * i, 16 * j), atol=1e-5)
            expected = sum(
                wy * wx * classifier_on(coarse, scaled, 32 * m, 32 * n)
                for m, wy in _between(i / 2, 4, "bilinear")
                for n, wx in _between(j / 2, 6, "bilinear")
            )
            assert torch.allclose(probs[0, 0, :, i, j], expected, atol=1e-5), (i, j)
    # a stride-16 net at half the kernel has the reference's grid: its cell i is reference cell i
    half = nets("tiny_s16", 32, seed=2)
    probs = Ensemble([coarse, half]).probabilities_at(pixels, size)[0, 1]
    small = resize(pixels, (80, 112))
    assert probs.shape[-2:] == (4, 6)
    for i in range(4):
        for j in range(6):
            assert torch.allclose(probs[:, i, j], classifier_on(half, small, 16 * i, 16 * j), atol=1e-5)


def test_the_reference_nets_probabilities_do_not_depend_on_the_others(nets):
    reference = nets("tiny0", 64)
    pixels, size = noise(100, 130, seed=4), (192, 240)
    alone = Ensemble([reference]).probabilities_at(pixels, size)
    mixed = Ensemble([reference, nets("tiny0", 48, seed=1), nets("tiny_s16", 32, seed=2)])
    assert mixed.reference == 0
    probs = mixed.probabilities_at(pixels, size)
    assert probs.shape == (1, 3, len(CLASSES), 5, 6) and torch.equal(probs[:, :1], alone)


def test_evaluation_squashes_a_region_to_each_nets_own_kernel(nets):
    reference, large = nets("tiny0", 64), nets("tiny_s16", 96, seed=1)
    ensemble = Ensemble([reference, large])
    region = noise(70, 90, seed=6)
    squashed = [squash(ensemble, region[0].permute(1, 2, 0).numpy()) for _ in range(2)]
    assert sorted(squashed[0]) == [(64, 64), (96, 96)]
    probs = classify_batch(ensemble, squashed)
    assert probs.shape == (2, 2, len(CLASSES))
    for n, fcn in enumerate([reference, large]):
        with torch.inference_mode():
            expected = fcn.classifier(fcn.normalize(resize(region, (fcn.kernel, fcn.kernel)))).softmax(dim=1)[0]
        assert np.allclose(probs[:, n], expected.numpy(), atol=1e-5)


def test_cropper_decodes_for_the_largest_kernel_and_maps_boxes_with_the_references(nets):
    small, large = nets("tiny0", 64), nets("tiny0", 96, seed=1)
    cropper = Cropper(Ensemble([small, large]), max_scale=1.5, categories=["cake"])
    assert cropper.min_side == 144 and cropper.ensemble.kernel == 96  # ceil(96 * 1.5); the reference: the finer grid
    pixels = noise(100, 130, seed=5)
    result = cropper.crop_image(pixels[0].permute(1, 2, 0).numpy())
    (box,) = result.boxes
    assert result.scales == tuple(geometry.pyramid_scales(100, 130, 96, 1.2, 1.5))
    levels = []
    for scale in result.scales:
        probs = cropper.ensemble.probabilities_at(pixels, geometry.scaled_size(100, 130, scale, 96))[0, :, 2]
        levels.append(Level(probs.numpy(), np.zeros(probs.shape, bool)))  # the paper's rule sums probabilities
    scaled = geometry.scaled_size(100, 130, result.scales[box.level], 96)
    assert box.window == geometry.cell_to_box(box.cell, (100, 130), scaled, 96, 32)
    choice = select(levels, "paper")
    assert (choice.level, choice.cell) == (box.level, box.cell)


def test_label_levels_and_batches_give_the_boxes_of_one_image_at_a_time(tmp_path, nets):
    cropper = Cropper(Ensemble([nets("tiny0", 64), nets("tiny_s16", 80, seed=1)]), max_scale=1.5, categories=["egg"])
    paths = []
    for k in range(3):
        paths.append(tmp_path / f"{k}.png")
        Image.fromarray(noise(100, 130, seed=10 + k)[0].permute(1, 2, 0).numpy()).save(paths[-1])
    single = {p: cropper.crop_image(p).boxes[0] for p in paths}
    cropper.batch_size = 3
    batched = {r.item.path: r.boxes[0] for r in cropper.crop_items(discover(paths))}
    for path, box in batched.items():  # one batch of three: the same choices, sums to float rounding
        alone = single[path]
        assert (box.level, box.cell, box.votes, box.window) == (alone.level, alone.cell, alone.votes, alone.window)
        assert box.confidence == pytest.approx(alone.confidence, abs=1e-5)
    for path in paths:
        size, levels, label, _, _ = cropper.label_levels(discover([path])[0], "egg")
        choice = select(label, cropper.options.selection)
        assert (choice.level, choice.cell) == (single[path].level, single[path].cell)
        window = geometry.cell_to_box(
            choice.cell, size, levels[choice.level][1], cropper.ensemble.kernel, cropper.ensemble.stride
        )
        assert window == single[path].window


def test_shared_kernel_ensembles_give_todays_probabilities_and_boxes_byte_for_byte(one_thread):
    import fcnx_tiny

    items = discover([Path(fcnx_tiny.__file__).parent / "demo"])
    ensemble = load_ensemble(["tiny_vgg", "tiny_resnet", "tiny_inception"], kernel=56, device="cpu")
    assert not ensemble.mixed
    cropper = Cropper(ensemble)
    results = {r.item.path: r for r in cropper.crop_items(items)}
    assert len(results) == 10
    for item in items:
        pixels, size = load_rgb(item.path, cropper.min_side)
        tensor = torch.from_numpy(pixels).permute(2, 0, 1)[None]
        levels, category = [], cropper.category_index(item.label)
        sizes = [(scale, geometry.scaled_size(*size, scale, 56)) for scale in results[item.path].scales]
        for _, scaled in sizes:
            plain = ensemble.probabilities(resize(tensor, scaled))  # the call the cropper made before mixed nets
            assert torch.equal(ensemble.probabilities_at(tensor, scaled), plain)
            today = ensemble.outputs_at(tensor, scaled)[0]  # the cropper's: the windows pooled from the class maps
            assert (today - plain).abs().max() < 1e-6
            levels.append(Level(today[0, :, category].numpy(), (today[0].argmax(dim=1) == category).numpy()))
        choice = select(levels, cropper.options.selection)
        (box,) = results[item.path].boxes
        assert (box.level, box.cell, box.votes, box.confidence) == (
            choice.level,
            choice.cell,
            choice.votes,
            choice.confidence,
        )
        kernel, stride = cropper.ensemble.kernel, cropper.ensemble.stride
        assert box.window == geometry.cell_to_box(choice.cell, size, sizes[choice.level][1], kernel, stride)


def test_load_ensemble_native_and_per_net_kernels(tmp_path, tiny_registry):
    paths = {
        name: random_tiny_checkpoint(tmp_path / f"{name}.safetensors", name, CLASSES, input_size=size)
        for name, size in (("tiny0", 64), ("tiny_s16", 80))
    }
    native = load_ensemble(["tiny0", "tiny_s16"], paths, kernel="native", device="cpu")
    assert [f.kernel for f in native.fcns] == [64, 80] and native.mixed
    mapped = load_ensemble(["tiny0", "tiny_s16"], paths, kernel={"tiny_s16": 96}, device="cpu")
    assert [f.kernel for f in mapped.fcns] == [64, 96]
    assert [f.kernel for f in load_ensemble(["tiny0", "tiny_s16"], paths, kernel=96, device="cpu").fcns] == [96, 96]
    with pytest.raises(UsageError, match="a kernel given for tiny11, which is not among the nets"):
        load_ensemble(["tiny0"], {"tiny0": paths["tiny0"]}, kernel={"tiny11": 64}, device="cpu")
    with pytest.raises(UsageError, match="unknown kernel 'big': give a side in pixels or 'native'"):
        load_ensemble(["tiny0"], {"tiny0": paths["tiny0"]}, kernel="big", device="cpu")


def test_a_timm_resnet_at_output_stride_16_beside_its_stride_32_self(one_thread):
    """A real architecture's measured stride-16 formula: its cells fill the stride-32 grid at every second one."""
    timm = pytest.importorskip("timm")
    import fcnx_timm
    from fcnx.backbones import probe
    from fcnx.backbones.spec import BackboneSpec

    def spec(output_stride: int) -> BackboneSpec:
        def build(classes: int, head: tuple[int, ...], pretrained: str | None) -> torch.nn.Module:
            torch.manual_seed(output_stride)
            return timm.create_model("resnet18", num_classes=classes, output_stride=output_stride).eval()

        with torch.device("meta"):
            model = build(3, (), None)
        stride, offset = probe.measure_formula(
            lambda w: int(model.forward_features(torch.empty(1, 3, w, w, device="meta")).shape[-2])
        )
        return BackboneSpec(
            name=f"resnet18_os{output_stride}",
            framework="pytorch",
            stride=stride,
            offset=offset,
            default_size=224,
            padding="same",
            build=build,
            convolutionalize=fcnx_timm.convolutionalize,
        )

    coarse, fine = spec(32), spec(16)
    assert (coarse.stride, coarse.offset, fine.stride, fine.offset) == (32, -31, 16, -15)
    fcns = [load_fcn(s, None, classes=["a", "b", "c"], kernel=96) for s in (coarse, fine)]
    ensemble = Ensemble(fcns)
    pixels, size = noise(100, 130, seed=7), (160, 224)
    probs = ensemble.probabilities_at(pixels, size)[0]
    assert ensemble.reference == 1 and probs.shape == (2, 3, 5, 9)  # the stride-16 grid
    with torch.inference_mode():
        own = [fcn(resize(pixels, size)).softmax(dim=1)[0] for fcn in fcns]  # each net alone
    assert own[0].shape[-2:] >= (3, 5) and own[1].shape[-2:] >= (5, 9)
    assert torch.allclose(probs[1], own[1][:, :5, :9], atol=1e-6)
    assert torch.allclose(probs[0, :, 0::2, 0::2], own[0][:, :3, :5], atol=1e-6)
    assert torch.allclose(probs[0, :, 1::2, 0::2], (own[0][:, :2, :5] + own[0][:, 1:3, :5]) / 2, atol=1e-6)
