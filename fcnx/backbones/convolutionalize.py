"""Convolutionalization of PyTorch classifiers: global pool -> AvgPool(D, stride 1), dense -> 1x1 conv.

The converted layers share nothing mutable with the originals but hold exactly their parameters,
so on a ``W x W`` input the FCN reproduces the classifier's logits. Called with ``cells=True``, an
FCN also returns its *class maps*: the head applied to every cell of the final feature map on its
own (for a linear head, the class activation maps of Zhou et al., 2016), ``N x classes x H' x W'``.
Where the head commutes with the average pool (:func:`pool_the_cells`), the windows' logits are then
the mean of the class maps' cells: one pass of the head instead of two.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

#: element-wise layers that behave the same on ``N x C`` and ``N x C x h x w`` tensors
ELEMENTWISE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Mish)


def dense_head(in_features: int, hidden: Sequence[int], num_classes: int, dropout: float = 0.5) -> nn.Sequential:
    """A dense head ``in -> hidden[0] -> ... -> num_classes``: Linear, BatchNorm, ReLU, Dropout per hidden layer.

    ``dense_head(2048, (1024, 512), 101)`` is the paper's InceptionV3 head. With no hidden
    layers it is a single Linear.
    """
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.BatchNorm1d(h), nn.ReLU(inplace=True), nn.Dropout(dropout)]
        width = h
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def convolutionalize_head(layer: nn.Module) -> nn.Module:
    """The 1x1-convolution equivalent of a head made of dense, batch-norm, activation and dropout layers.

    Raises ``TypeError`` for a layer with no spatial equivalent.
    """
    if isinstance(layer, nn.Linear):
        conv = nn.Conv2d(layer.in_features, layer.out_features, 1, bias=layer.bias is not None)
        with torch.no_grad():
            conv.weight.copy_(layer.weight.view(layer.out_features, layer.in_features, 1, 1))
            if layer.bias is not None and conv.bias is not None:
                conv.bias.copy_(layer.bias)
        return conv
    if isinstance(layer, nn.BatchNorm1d):
        bn = nn.BatchNorm2d(
            layer.num_features,
            eps=layer.eps,
            momentum=layer.momentum,
            affine=layer.affine,
            track_running_stats=layer.track_running_stats,
        )
        bn.load_state_dict(layer.state_dict())
        return bn
    if isinstance(layer, nn.Sequential):
        return nn.Sequential(*(convolutionalize_head(child) for child in layer))
    if isinstance(layer, (nn.Dropout, nn.Identity, nn.Flatten)):
        return nn.Identity()  # FCNs run in eval mode, where dropout is the identity
    if isinstance(layer, ELEMENTWISE):
        return layer
    raise TypeError(
        f"cannot convolutionalize layer {type(layer).__name__}; heads may hold Linear, BatchNorm1d, "
        f"Dropout and element-wise activations"
    )


class PooledFCN(nn.Module):
    """``features -> [pre_logits] -> AvgPool(pool, stride 1) -> convolutionalized head``.

    ``forward(x, cells=True)`` returns ``(logits, class maps)``: the head also run on the unpooled features.
    """

    #: whether ``forward(x, cells=True)`` gives class maps
    class_maps = True
    #: whether ``forward(x, cells=True)`` pools the class maps into the windows' logits (:func:`pool_the_cells`)
    pooled_cells = False

    def __init__(
        self,
        features: Callable[[torch.Tensor], torch.Tensor],
        pool: int,
        head: nn.Module,
        pre_logits: nn.Module | None = None,
        owner: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.owner = owner  # keeps the backbone's parameters registered (device moves, state_dict)
        self._features = features
        self.pre_logits = pre_logits if pre_logits is not None else nn.Identity()
        self.pool = pool
        self.head = head

    def forward(self, x: torch.Tensor, cells: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        x = self.pre_logits(self._features(x))
        if cells and self.pooled_cells:
            maps = self.head(x)
            return F.avg_pool2d(maps.contiguous(), self.pool, stride=1), maps
        logits = self.head(F.avg_pool2d(x, self.pool, stride=1))
        return (logits, self.head(x)) if cells else logits


def convolutionalize(classifier: nn.Module, pool: int) -> PooledFCN:
    """The default FCN of a classifier made of a convolutional trunk, a global average pool and a dense head.

    The trunk is ``forward_features`` (timm's convention) or a ``features`` module; the head is
    ``get_classifier()`` (timm) or the ``fc``, ``classifier`` or ``head`` attribute. The global pool becomes an
    average pool of side ``pool`` with stride 1 and the head runs as 1x1 convolutions.
    """
    trunk = getattr(classifier, "forward_features", None) or getattr(classifier, "features", None)
    get_head = getattr(classifier, "get_classifier", None)
    head = get_head() if callable(get_head) else None
    for name in ("fc", "classifier", "head"):
        head = head if head is not None else getattr(classifier, name, None)
    if not callable(trunk) or not isinstance(head, nn.Module):
        raise TypeError(
            f"{type(classifier).__name__} has no forward_features/features trunk and fc/classifier/head layer; "
            f"give the backbone's spec its own convolutionalize"
        )
    return PooledFCN(trunk, pool, convolutionalize_head(head), owner=classifier)


#: global pools whose sliding-window version :class:`FoldedFCN` computes (timm's ``pool_type`` names)
WINDOW_POOLS = ("avg", "max", "avgmax")


def window_pool(x: torch.Tensor, size: int, kind: str) -> torch.Tensor:
    """The global pool ``kind`` (``avg``, ``max`` or ``avgmax``) of every ``size x size`` window, stride 1."""
    if kind == "avg":
        return F.avg_pool2d(x, size, stride=1)
    if kind == "max":
        return F.max_pool2d(x, size, stride=1)
    if kind == "avgmax":
        return 0.5 * (F.avg_pool2d(x, size, stride=1) + F.max_pool2d(x, size, stride=1))
    raise ValueError(f"no sliding-window form of the global pool {kind!r}; known: {', '.join(WINDOW_POOLS)}")


class FoldedFCN(nn.Module):
    """``features -> window pool (pool x pool, stride 1) -> the classifier's own head on every window``.

    The head is the classifier's unchanged (global pool, norms, MLPs, dense layers, whatever they
    are): each window's pooled vector is fed to it as a ``1 x 1`` feature map, folded into the batch,
    where the head's global pool is the identity. So a head that treats pooled vectors one by one
    needs no layer-by-layer conversion, and on a ``W x W`` input the FCN returns the classifier's logits.
    ``forward(x, cells=True)`` returns ``(logits, class maps)``: the head also run on every feature cell alone.
    """

    #: whether ``forward(x, cells=True)`` gives class maps
    class_maps = True

    def __init__(
        self,
        model: nn.Module,
        features: Callable[[torch.Tensor], torch.Tensor],
        head: Callable[[torch.Tensor], torch.Tensor],
        pool: int,
        kind: str = "avg",
    ) -> None:
        super().__init__()
        if kind not in WINDOW_POOLS:
            raise ValueError(f"no sliding-window form of the global pool {kind!r}; known: {', '.join(WINDOW_POOLS)}")
        self.model = model  # keeps the classifier's parameters registered (device moves, state_dict)
        self._features, self._head = features, head
        self.pool, self.kind = pool, kind
        self.pooled_cells = False  # (:func:`pool_the_cells`)

    def forward(self, x: torch.Tensor, cells: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        features = self._features(x)
        if cells and self.pooled_cells:
            maps = self._per_cell(features)
            return F.avg_pool2d(maps.contiguous(), self.pool, stride=1), maps
        logits = self._per_cell(window_pool(features, self.pool, self.kind))
        return (logits, self._per_cell(features)) if cells else logits

    def _per_cell(self, x: torch.Tensor) -> torch.Tensor:
        """The head on every cell of ``x`` (``N x C x h x w``), each as a ``1 x 1`` map folded into the batch."""
        n, c, h, w = x.shape
        logits = self._head(x.permute(0, 2, 3, 1).reshape(n * h * w, c, 1, 1))
        return logits.reshape(n, h, w, -1).permute(0, 3, 1, 2)


def pool_the_cells(net: PooledFCN | FoldedFCN, probe: torch.Tensor, tolerance: float = 1e-5) -> bool:
    """Let ``net`` (a :class:`PooledFCN`, or a :class:`FoldedFCN` of an average pool) compute its windows'
    logits in ``forward(x, cells=True)`` as the mean of its class maps' cells, when that is the same
    function on ``probe`` (a normalized input of a few windows a side): true of a linear head, whose
    logits commute with the average. Returns whether it does; nets it does not hold are left as they are.
    """
    if not getattr(net, "class_maps", False) or getattr(net, "kind", "avg") != "avg":
        return False
    with torch.no_grad():
        windows, maps = net(probe, cells=True)
        pooled = F.avg_pool2d(maps, net.pool, stride=1)
    scale = max(1.0, float(windows.abs().max()))
    same = pooled.shape == windows.shape and float((pooled - windows).abs().max()) <= tolerance * scale
    net.pooled_cells = same
    return same
