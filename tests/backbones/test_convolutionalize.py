"""Exactness of convolutionalization: on a kernel x kernel input the FCN returns the classifier's
logits; on a larger input a heatmap of the shape the formula predicts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fcnx.backbones.convolutionalize import PooledFCN, convolutionalize_head, dense_head
from fcnx.backbones.registry import list_backbones
from fcnx.engine.fcn import load_fcn
from fcnx.testing import random_checkpoint

TORCH_BACKBONES = [s.name for s in list_backbones() if s.framework == "pytorch" and not s.missing_requirements()]
KERNEL = 299
CLASSES = [f"class_{i}" for i in range(5)]


@pytest.mark.parametrize("head", [(), (32, 16)], ids=["dense", "paper-head"])
@pytest.mark.parametrize("name", TORCH_BACKBONES)
def test_fcn_equals_classifier_at_kernel_and_gives_heatmap_above(tmp_path, name, head):
    path = random_checkpoint(tmp_path / f"{name}.safetensors", name, CLASSES, input_size=KERNEL, head=head)
    fcn = load_fcn(name, path, kernel=KERNEL)
    assert fcn.classes == CLASSES and fcn.pool == fcn.spec.pool_size(KERNEL)
    generator = torch.Generator().manual_seed(1)
    high, wide = KERNEL + 2 * fcn.spec.stride, KERNEL + fcn.spec.stride  # two and one cells more
    pixels = torch.rand(2, 3, KERNEL, KERNEL, generator=generator) * 255
    with torch.inference_mode():
        expected = fcn.classifier(fcn.normalize(pixels))
        got = fcn(pixels)
        larger = fcn(torch.rand(1, 3, high, wide, generator=generator) * 255)
    assert got.shape == (2, len(CLASSES), 1, 1)
    assert expected.abs().max() > 1e-2  # a meaningful comparison, not zeros against zeros
    assert (got[:, :, 0, 0] - expected).abs().max().item() <= 1e-4
    assert tuple(larger.shape[-2:]) == fcn.spec.heatmap_shape(high, wide, KERNEL) == (3, 2)
    # the class maps come from the same pass; for a linear head after an average pool, every window's logits
    # are the mean of its cells' (class activation maps), and the first cell's centre is where the geometry says
    assert fcn.class_maps
    linear = not head and getattr(fcn.net, "kind", "avg") == "avg"
    assert fcn.net.pooled_cells == linear  # then the windows' logits are pooled from the cells: one head pass
    with torch.inference_mode():
        logits, cells = fcn.with_cells(pixels)
    assert (logits - got).abs().max().item() <= 1e-4 * max(1.0, got.abs().max().item())
    assert cells.shape[:2] == (2, len(CLASSES))
    if linear:
        pooled = torch.nn.functional.avg_pool2d(cells, int(getattr(fcn.net, "pool", fcn.pool)), stride=1)
        assert (pooled - logits).abs().max().item() <= 1e-4
        assert fcn.class_map_origin + fcn.spec.stride * (cells.shape[-1] - 1) / 2 == pytest.approx(KERNEL / 2)


def test_dense_head_converts_layer_by_layer():
    torch.manual_seed(0)
    head = dense_head(12, (8, 6), 4, dropout=0.3).eval()
    for module in head.modules():
        if isinstance(module, nn.BatchNorm1d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2.0)
    conv = convolutionalize_head(head).eval()
    x = torch.randn(3, 12)
    assert [type(m).__name__ for m in conv] == ["Conv2d", "BatchNorm2d", "ReLU", "Identity"] * 2 + ["Conv2d"]
    assert torch.allclose(conv(x[:, :, None, None])[:, :, 0, 0], head(x), atol=1e-6)


def test_head_with_unknown_layer_is_refused():
    with pytest.raises(TypeError, match="cannot convolutionalize layer LayerNorm"):
        convolutionalize_head(nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4)))


def test_pooled_fcn_averages_windows_of_the_pool_size():
    features = nn.Identity()
    head = convolutionalize_head(nn.Linear(1, 1, bias=False))
    with torch.no_grad():
        head.weight.fill_(1.0)
    fcn = PooledFCN(features, 2, head)
    x = torch.arange(9.0).view(1, 1, 3, 3)
    assert fcn(x)[0, 0].tolist() == [[2.0, 3.0], [5.0, 6.0]]


def test_a_spec_with_only_build_gets_the_default_load_and_fcn(tmp_path):
    """``fcnx.plugin``'s defaults: strict safetensors load and trunk + pool + 1x1 head, exact at the kernel."""
    from fcnx.backbones import checkpoint
    from fcnx.plugin import BackboneSpec, WeightsError

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2))
            self.fc = nn.Linear(8, 5)

        def forward(self, x):
            return self.fc(self.features(x).mean((2, 3)))

    spec = BackboneSpec(
        name="only_build",
        framework="pytorch",
        stride=4,
        offset=3,
        default_size=19,
        build=lambda n, head, pretrained: Net(),
    )
    source = Net().eval()
    path = checkpoint.save(
        tmp_path / "w.safetensors",
        source.state_dict(),
        checkpoint.CheckpointMeta(arch="only_build", classes=list("abcde"), input_size=19),
    )
    model = spec.build(5, (), None).eval()
    spec.load_weights(model, path)
    fcn = spec.convolutionalize(model, spec.pool_size(19)).eval()
    x = torch.rand(2, 3, 19, 19)
    with torch.no_grad():
        assert torch.allclose(fcn(x).flatten(1), source(x), atol=1e-6)
        assert fcn(torch.rand(1, 3, 27, 23)).shape == (1, 5, 3, 2)
    other = checkpoint.save(
        tmp_path / "bad.safetensors",
        {"fc.weight": torch.zeros(5, 8)},
        checkpoint.CheckpointMeta(arch="only_build", classes=list("abcde"), input_size=19),
    )
    with pytest.raises(WeightsError, match="missing tensor"):
        spec.load_weights(spec.build(5, (), None), other)
