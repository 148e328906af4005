"""BatchNorm folded into the convolution that feeds it, for inference: the same function, fewer passes over memory.

A batch norm in eval mode is an affine map per channel, ``y = (x - mean) / sqrt(var + eps) * gamma + beta``;
applied to a convolution's output it is the same convolution with each output channel's weights scaled and
a bias added. Pairs are found by running the net once and matching tensors (the batch norm's input *is* the
convolution's output), so folding needs no knowledge of the architecture; the folded copy is then checked
against the original on that input and discarded if it differs (a convolution whose output also feeds another
layer cannot be folded).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

#: largest |folded - original| on the probe, relative to the largest |logit|, accepted as the same function
TOLERANCE = 1e-4


def _foldable(bn: nn.Module) -> bool:
    return (
        isinstance(bn, nn.BatchNorm2d)
        and bn.track_running_stats
        and bn.running_mean is not None
        and (type(bn) is nn.BatchNorm2d or (hasattr(bn, "act") and hasattr(bn, "drop")))  # timm's BatchNormAct2d
    )


def _pairs(net: nn.Module, probe: torch.Tensor) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
    """(convolution, batch norm) pairs where the batch norm's only call takes the convolution's output."""
    outputs: dict[int, tuple[nn.Conv2d, torch.Tensor]] = {}
    calls: dict[int, int] = {}
    found: list[tuple[nn.Conv2d, nn.BatchNorm2d]] = []

    def after_conv(module: nn.Module, _: tuple, out: torch.Tensor) -> None:
        assert isinstance(module, nn.Conv2d)
        calls[id(module)] = calls.get(id(module), 0) + 1
        outputs[id(out)] = (module, out)  # the tensor is kept alive, so its id stays unique

    def before_bn(module: nn.Module, args: tuple) -> None:
        calls[id(module)] = calls.get(id(module), 0) + 1
        conv = outputs.get(id(args[0]))
        if conv is not None and conv[1] is args[0]:
            found.append((conv[0], module))  # type: ignore[arg-type]

    hooks = [m.register_forward_hook(after_conv) for m in net.modules() if isinstance(m, nn.Conv2d)]
    hooks += [m.register_forward_pre_hook(before_bn) for m in net.modules() if _foldable(m)]
    try:
        with torch.inference_mode():
            net(probe)
    finally:
        for hook in hooks:
            hook.remove()
    return [(c, b) for c, b in found if calls[id(c)] == 1 and calls[id(b)] == 1]


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Scale ``conv``'s output channels and give it ``bn``'s shift (computed in float64, rounded once)."""
    assert bn.running_mean is not None and bn.running_var is not None
    with torch.no_grad():
        scale = torch.rsqrt(bn.running_var.double() + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight.double()
        bias = -bn.running_mean.double() * scale
        if bn.bias is not None:
            bias = bias + bn.bias.double()
        if conv.bias is not None:
            bias = bias + conv.bias.double() * scale
        dtype = conv.weight.dtype
        conv.weight.copy_((conv.weight.double() * scale.view(-1, 1, 1, 1)).to(dtype))
        conv.bias = nn.Parameter(bias.to(dtype))


def _replacement(bn: nn.Module) -> nn.Module:
    """What is left of a folded batch norm: nothing, or timm's activation after it."""
    if type(bn) is nn.BatchNorm2d:
        return nn.Identity()
    drop, act = bn.drop, bn.act
    assert isinstance(drop, nn.Module) and isinstance(act, nn.Module)
    return nn.Sequential(drop, act)


def fold_batchnorm(net: nn.Module, probe: torch.Tensor) -> tuple[nn.Module, int]:
    """A copy of ``net`` (in eval mode) with its batch norms folded into their convolutions, and how many were folded.

    ``probe`` is an input the net accepts (one kernel-sized image); ``net`` itself is left unchanged, and is
    returned as is (with 0) when nothing folds or the folded copy does not give the same output on ``probe``.
    """
    folded = copy.deepcopy(net).eval()
    pairs = _pairs(folded, probe)
    if not pairs:
        return net, 0
    parents = {id(child): (parent, name) for parent in folded.modules() for name, child in parent.named_children()}
    for conv, bn in pairs:
        _fold(conv, bn)
        parent, name = parents[id(bn)]
        setattr(parent, name, _replacement(bn))
    with torch.inference_mode():
        expected, got = net.eval()(probe), folded(probe)
    if (got - expected).abs().max() > TOLERANCE * max(expected.abs().max().item(), 1.0):
        return net, 0
    return folded, len(pairs)
