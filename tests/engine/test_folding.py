"""BatchNorm folding: the folded FCN is the same function (to float rounding) and crops the same boxes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from fcnx.engine.backends.folding import fold_batchnorm
from fcnx.engine.cropper import Cropper
from fcnx.engine.ensemble import Ensemble
from fcnx.engine.fcn import load_fcn
from fcnx.io.discovery import discover

TINY = ["tiny_vgg", "tiny_resnet", "tiny_inception", "tiny_mobilenet"]


def _batchnorms(net: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in net.modules())


@pytest.mark.parametrize(("name", "kernel"), [*((n, 56) for n in TINY), ("efficientnet_lite0", 224)])
def test_folded_fcn_equals_unfolded_and_keeps_the_classifier(one_thread, name, kernel):
    plain = Ensemble([load_fcn(name, "pretrained", kernel=kernel)], fold=False).fcns[0]
    folded = Ensemble([load_fcn(name, "pretrained", kernel=kernel)]).fcns[0]
    assert _batchnorms(plain.net) > 0 and _batchnorms(folded.net) == 0
    assert _batchnorms(folded.classifier) == _batchnorms(plain.classifier)  # the classifier is not touched
    pixels = torch.rand(2, 3, kernel + 64, kernel + 96, generator=torch.Generator().manual_seed(3)) * 255
    with torch.inference_mode():
        expected, got = plain(pixels), folded(pixels)
    assert expected.abs().max() > 1.0
    assert (got - expected).abs().max().item() <= 1e-5 * expected.abs().max().item()


@pytest.mark.parametrize("fold", [True, False])
def test_the_ensemble_leaves_the_nets_it_is_given_as_they_are(one_thread, fold):
    """An Ensemble runs prepared copies (folded, channels-last); the caller's FCN keeps its net and its weights."""
    fcn = load_fcn("tiny_resnet", "pretrained", kernel=56)
    net = fcn.net
    before = {name: (tensor.clone(), tensor.stride()) for name, tensor in net.state_dict().items()}
    ensemble = Ensemble([fcn], fold=fold, backend="torch")
    assert fcn.net is net and ensemble.fcns[0] is not fcn and ensemble.fcns[0].net is not net
    assert _batchnorms(net) > 0 and _batchnorms(ensemble.fcns[0].net) == (0 if fold else _batchnorms(net))
    after = net.state_dict()
    assert all(torch.equal(after[k], v) and after[k].stride() == s for k, (v, s) in before.items())
    pixels = torch.rand(1, 3, 80, 96, generator=torch.Generator().manual_seed(3)) * 255
    with torch.inference_mode():
        expected, got = fcn(pixels), ensemble.fcns[0](pixels)
    assert (got - expected).abs().max().item() <= 1e-5 * expected.abs().max().item()


class _Shared(nn.Module):
    """A convolution whose output feeds a batch norm and, beside it, the sum: it cannot be folded."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, bias=False)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + y


def test_convolution_with_a_second_consumer_is_left_alone():
    net = _Shared().eval()
    with torch.no_grad():
        net.bn.running_mean.fill_(0.5)
        net.bn.running_var.fill_(4.0)
    probe = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    same, count = fold_batchnorm(net, probe)
    assert same is net and count == 0 and _batchnorms(net) == 1


def test_demo_canvases_get_identical_boxes_folded_or_not(one_thread):
    import fcnx_tiny

    items = discover([Path(fcnx_tiny.__file__).parent / "demo"])
    boxes = []
    for fold in (False, True):
        fcns = [load_fcn(n, "pretrained") for n in ("tiny_vgg", "tiny_resnet", "tiny_inception")]
        results = list(Cropper(Ensemble(fcns, fold=fold)).crop_items(items))
        boxes.append(
            sorted((str(r.item.path), b.level, b.cell, b.votes, b.x, b.y, b.w, b.h) for r in results for b in r.boxes)
        )
    assert len(boxes[0]) == 10 and boxes[0] == boxes[1]
