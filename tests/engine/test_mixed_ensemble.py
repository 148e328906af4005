"""Ensembles of nets with other kernels or strides: each net on its own resize, resampled on the first net's grid."""

from __future__ import annotations

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
from fcnx.io.images import discover, load_rgb
from fcnx.jobs.evaluation import classify_batch, squash
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


def test_a_net_at_twice_the_kernel_sees_the_original_at_twice_the_size_on_the_same_windows(nets):
    reference, large = nets("tiny0", 64), nets("tiny0", 128, seed=1)
    ensemble = Ensemble([reference, large])
    assert ensemble.mixed and (ensemble.kernel, ensemble.stride) == (64, 32)
    pixels, size = noise(100, 130), (160, 224)
    assert ensemble.input_sizes(size) == [(160, 224), (320, 448)]
    probs = ensemble.probabilities_at(pixels, size)
    assert probs.shape == (1, 2, len(CLASSES), 4, 6)  # the reference grid: common_cells(160 / 224, 64, 32)
    small_input, large_input = resize(pixels, (160, 224)), resize(pixels, (320, 448))  # both from the original
    for i in range(4):
        for j in range(6):
            # reference cell (i, j): window [32i, 32i + 64) of the level; the large net's cell (2i, 2j), same window x 2
            expected = classifier_on(reference, small_input, 32 * i, 32 * j)
            assert torch.allclose(probs[0, 0, :, i, j], expected, atol=1e-5)
            expected = classifier_on(large, large_input, 64 * i, 64 * j)
            assert torch.allclose(probs[0, 1, :, i, j], expected, atol=1e-5), (i, j)


def test_a_net_at_one_and_a_half_the_kernel_is_interpolated_between_its_cells(nets):
    reference, large = nets("tiny0", 64), nets("tiny0", 96, seed=1)
    for align in ("bilinear", "nearest"):
        ensemble = Ensemble([reference, large], align=align)
        pixels, size = noise(100, 130, seed=2), (160, 224)
        assert ensemble.input_sizes(size)[1] == (240, 336)
        probs = ensemble.probabilities_at(pixels, size)[0, 1]
        scaled = resize(pixels, (240, 336))
        cells = geometry.common_cells(240, 96, 32), geometry.common_cells(336, 96, 32)
        assert cells == (5, 8)
        # reference cell i is centred on the net's cell 1.5 i (clamped to the net's last cell)
        for i in range(4):
            for j in range(6):
                rows = _between(1.5 * i, cells[0], align)
                cols = _between(1.5 * j, cells[1], align)
                expected = sum(
                    wy * wx * classifier_on(large, scaled, 32 * m, 32 * n) for m, wy in rows for n, wx in cols
                )
                assert torch.allclose(probs[:, i, j], expected, atol=1e-5), (align, i, j)
        assert torch.allclose(probs.sum(dim=0), torch.ones(4, 6))


def _between(position: float, cells: int, align: str) -> list[tuple[int, float]]:
    """The cells and weights around ``position`` (hand-made: positions here are whole or half cells)."""
    position = min(position, cells - 1)
    low = int(position)
    if position == low:
        return [(low, 1.0)]
    return [(low + 1, 1.0)] if align == "nearest" else [(low, 0.5), (low + 1, 0.5)]


def test_a_stride_16_net_takes_the_reference_windows_every_second_cell(nets):
    reference, fine = nets("tiny0", 64), nets("tiny_s16", 64, seed=1)
    assert fine.spec.stride == 16
    ensemble = Ensemble([reference, fine])
    pixels, size = noise(100, 130, seed=3), (160, 224)
    assert ensemble.mixed and ensemble.input_sizes(size) == [size, size]
    probs = ensemble.probabilities_at(pixels, size)
    scaled = resize(pixels, size)
    for i in range(4):
        for j in range(6):
            assert torch.allclose(probs[0, 1, :, i, j], classifier_on(fine, scaled, 32 * i, 32 * j), atol=1e-5)
    # the other way round: the stride-16 grid, the stride-32 net halfway between its cells
    probs = Ensemble([fine, reference]).probabilities_at(pixels, size)[0, 1]
    assert probs.shape[-2:] == (7, 11)
    half = (classifier_on(reference, scaled, 0, 0) + classifier_on(reference, scaled, 0, 32)) / 2
    assert torch.allclose(probs[:, 0, 1], half, atol=1e-5)


def test_the_reference_nets_probabilities_do_not_depend_on_the_others(nets):
    reference = nets("tiny0", 64)
    pixels, size = noise(100, 130, seed=4), (192, 240)
    alone = Ensemble([reference]).probabilities_at(pixels, size)
    mixed = Ensemble([reference, nets("tiny0", 96, seed=1), nets("tiny_s16", 80, seed=2)]).probabilities_at(
        pixels, size
    )
    assert mixed.shape == (1, 3, len(CLASSES), 5, 6) and torch.equal(mixed[:, :1], alone)


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
    reference, large = nets("tiny0", 64), nets("tiny0", 96, seed=1)
    cropper = Cropper(Ensemble([reference, large]), max_scale=1.5, categories=["cake"])
    assert cropper.min_side == 144  # ceil(96 * 1.5)
    pixels = noise(100, 130, seed=5)
    result = cropper.crop_image(pixels[0].permute(1, 2, 0).numpy())
    (box,) = result.boxes
    levels = []
    for scale in result.scales:
        probs = cropper.ensemble.probabilities_at(pixels, geometry.scaled_size(100, 130, scale, 64))[0, :, 2]
        levels.append(Level(probs.numpy(), np.zeros(probs.shape, bool)))  # the paper's rule sums probabilities
    scaled = geometry.scaled_size(100, 130, result.scales[box.level], 64)
    assert box.window == geometry.cell_to_box(box.cell, (100, 130), scaled, 64, 32)
    choice = select(levels, "paper")
    assert (choice.level, choice.cell) == (box.level, box.cell)


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
            today = ensemble.probabilities(resize(tensor, scaled))  # the call the cropper made before mixed nets
            assert torch.equal(ensemble.probabilities_at(tensor, scaled), today)
            levels.append(Level(today[0, :, category].numpy(), (today[0].argmax(dim=1) == category).numpy()))
        choice = select(levels, cropper.selection)
        (box,) = results[item.path].boxes
        assert (box.level, box.cell, box.votes, box.confidence) == (
            choice.level,
            choice.cell,
            choice.votes,
            choice.confidence,
        )
        assert box.window == cropper.box_of(choice, size, sizes)


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
