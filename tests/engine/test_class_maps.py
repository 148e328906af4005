"""Class maps (the head on each feature cell) from the same forward pass as the windows: torch, the CPU
runtimes, nets without them, and the tight boxes they give through the cropper."""

from __future__ import annotations

import pytest
import torch

from fcnx.engine.cropper import Cropper
from fcnx.engine.ensemble import Ensemble, load_ensemble
from fcnx.engine.fcn import load_fcn
from fcnx.io.discovery import discover
from fcnx.method import evidence, geometry
from fcnx.method.selection import select

NETS = ["tiny_vgg", "tiny_resnet", "tiny_inception"]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FCNX_CACHE", str(tmp_path / "cache"))


def _pixels(height: int = 150, width: int = 190) -> torch.Tensor:
    return torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(3)) * 255


def test_outputs_at_gives_the_probabilities_and_each_nets_class_maps(one_thread):
    ensemble = load_ensemble(NETS, kernel=56, device="cpu")
    pixels = _pixels()
    probs, cells = ensemble.outputs_at(pixels, (150, 190))
    assert all(fcn.net.pooled_cells for fcn in ensemble.fcns)  # linear heads: the windows pooled from the cells
    assert (probs - ensemble.probabilities_at(pixels, (150, 190))).abs().max() < 1e-6
    assert len(cells) == len(NETS)
    for fcn, net_cells in zip(ensemble.fcns, cells):
        assert net_cells is not None and net_cells.size == (150, 190) and net_cells.stride == 8
        assert net_cells.origin == fcn.class_map_origin
        # the head is one 1x1 convolution: each window's logits are the mean of its cells'
        pooled = torch.nn.functional.avg_pool2d(net_cells.logits, fcn.net.pool, stride=1)
        rows, cols = probs.shape[-2:]
        assert (pooled[:, :, :rows, :cols].softmax(1) - probs[:, ensemble.fcns.index(fcn)]).abs().max() < 1e-5


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_the_runtimes_give_torchs_class_maps(one_thread, cache, backend):
    pytest.importorskip(backend)
    reference = load_ensemble(NETS, kernel=56, device="cpu")
    other = load_ensemble(NETS, kernel=56, device="cpu", backend=backend)
    pixels = _pixels()
    expected, got = reference.outputs_at(pixels, (150, 190))[1], other.outputs_at(pixels, (150, 190))[1]
    for a, b in zip(expected, got):
        assert a is not None and b is not None and a.logits.shape == b.logits.shape
        assert (a.logits - b.logits).abs().max().item() < 1e-4 * max(1.0, a.logits.abs().max().item())


class _NoCells(torch.nn.Module):
    """A net that gives windows only (as a plugin's own FCN may)."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_a_net_without_class_maps_gets_none_and_the_windows_tight_box(one_thread):
    fcn = load_fcn("tiny_vgg", "pretrained", kernel=56)
    fcn.net = _NoCells(fcn.net)
    assert not fcn.class_maps
    ensemble = Ensemble([fcn, load_fcn("tiny_resnet", "pretrained", kernel=56)], fold=False)
    _, cells = ensemble.outputs_at(_pixels(), (150, 190))
    assert cells[0] is None and cells[1] is not None
    alone = Ensemble([load_fcn("tiny_vgg", "pretrained", kernel=56)], fold=False)
    alone.fcns[0].net = _NoCells(alone.fcns[0].net)
    cropper = Cropper(alone, categories=["sandal"])
    item = discover([_demo_image()])[0]
    size, levels, label, _, maps = cropper.label_levels(item, "sandal")
    assert all(level == [None] for level in maps)
    choice = select(label)
    window = geometry.cell_to_box(choice.cell, size, levels[choice.level][1], 56, 8)
    fit = evidence.tight_of(choice, size, [s for _, s in levels], 56, 8, window)
    (box,) = next(iter(cropper.crop_items([item]))).boxes
    assert box.tight == fit.box and not fit.whole


def test_the_croppers_tight_box_is_the_class_maps_region_of_label_levels(one_thread):
    cropper = Cropper(load_ensemble(NETS, kernel=56, device="cpu"), categories=["sandal"], box="tight")
    item = discover([_demo_image()])[0]
    size, levels, label, _, maps = cropper.label_levels(item, "sandal")
    choice = select(label)
    window = geometry.cell_to_box(choice.cell, size, levels[choice.level][1], 56, 8)
    fit = evidence.tight_of(choice, size, [s for _, s in levels], 56, 8, window, [[m for m in lv if m] for lv in maps])
    (box,) = next(iter(cropper.crop_items([item]))).boxes
    assert box.category == "sandal" and box.kind == "tight" and fit.whole
    assert (box.x, box.y, box.w, box.h) == pytest.approx(fit.box) and box.window == pytest.approx(window)


def _demo_image():
    from pathlib import Path

    import fcnx_tiny

    return next((Path(fcnx_tiny.__file__).parent / "demo" / "images" / "sandal").glob("*.png"))
