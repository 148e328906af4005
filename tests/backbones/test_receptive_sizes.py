"""Every registered PyTorch backbone's declared formula, checked on the real implementation.

For several D, exactly ``stride`` consecutive input sizes starting at ``W_min(D)`` give the same
heatmap, and the sizes just outside give one cell less or more. Shapes are computed on torch's
meta device, so no arithmetic runs.
"""

from __future__ import annotations

import pytest

from fcnx.backbones.registry import list_backbones
from fcnx.testing import formula_boundaries

TORCH_BACKBONES = [s.name for s in list_backbones() if s.framework == "pytorch" and not s.missing_requirements()]


def _heatmap_sides(spec, sizes: list[int]) -> list[int]:
    import torch

    kernel = spec.default_size
    model = spec.build(3, (), None)
    net = spec.convolutionalize(model, spec.pool_size(kernel)).to("meta").eval()
    sides = []
    with torch.no_grad():
        for side in sizes:
            sides.append(net(torch.empty(1, 3, side, side + spec.stride, device="meta")).shape[-2])
    return sides


@pytest.mark.parametrize("name", TORCH_BACKBONES)
def test_declared_formula_matches_implementation(name):
    from fcnx.backbones.registry import get_backbone

    spec = get_backbone(name)
    d0 = spec.pool_size(spec.default_size)
    sizes, expected = formula_boundaries(spec, d0)
    assert _heatmap_sides(spec, sizes) == expected
    assert [spec.heatmap_side(s, spec.default_size) for s in sizes] == expected
