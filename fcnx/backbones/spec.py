"""What a backbone declares about itself: geometry and preprocessing as data, plus its factory.

A backbone's spatial behaviour is the *receptive-size formula*: an input of side ``W`` yields a
final feature map of side ``D`` for every ``W`` in ``[W_min(D), W_min(D) + stride - 1]`` where
``W_min(D) = stride * D + offset``. Convolutionalizing it with an average pool of side ``D``
makes an FCN that behaves as the classifier slid over the input with kernel ``W_min(D)`` (any
size up to ``W_min(D) + stride - 1`` gives the same pool) and stride ``stride``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fcnx.method import geometry


@dataclass(frozen=True)
class Preprocess:
    """How pixels become network input: ``(pixel / 255 - mean) / std`` per channel, in ``channel_order``.

    ``mean`` and ``std`` are in units of 1/255 of a pixel (timm's convention), listed in RGB order.
    """

    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    channel_order: Literal["RGB", "BGR"] = "RGB"


#: ``build(num_classes, head, pretrained)`` -> a classifier of the backbone's framework. ``head`` lists
#: hidden dense widths (empty: one dense layer); ``pretrained`` is a hub tag or ``None`` (random init).
BuildFn = Callable[[int, tuple[int, ...], "str | None"], Any]
#: ``load_weights(classifier, path)`` loads a checkpoint strictly, raising :class:`~fcnx.errors.WeightsError`.
LoadWeightsFn = Callable[[Any, Path], None]
#: ``convolutionalize(classifier, pool)`` -> a torch-callable FCN: normalized ``N x 3 x H x W`` input
#: to ``N x classes x h x w`` logits, with the global pool replaced by an average pool of side ``pool``.
ConvolutionalizeFn = Callable[[Any, int], Any]


def load_strict(classifier: Any, path: Path) -> None:
    """The default ``load_weights``: every tensor of an fcnx checkpoint (safetensors, or ``.pt``/``.pth`` read
    with ``weights_only=True``) into a torch classifier; a missing, unexpected or misshapen tensor is an error."""
    from fcnx.backbones.checkpoint import load_state_strict, read_tensors

    load_state_strict(classifier, read_tensors(path), path)


def pooled_fcn(classifier: Any, pool: int) -> Any:
    """The default ``convolutionalize``: :func:`fcnx.backbones.convolutionalize.convolutionalize`
    (trunk, average pool of side ``pool``, dense head as 1x1 convolutions)."""
    from fcnx.backbones.convolutionalize import convolutionalize

    return convolutionalize(classifier, pool)


#: ``shipped_weights(tag)`` -> the fcnx checkpoint file a plugin ships for a pretrained tag, or ``None``
#: when the tag is for ``build`` (a hub download). A shipped file's metadata gives classes, head and size.
ShippedWeightsFn = Callable[[str], "Path | None"]


@dataclass(frozen=True)
class BackboneSpec:
    """One architecture a plugin offers.

    ``build``, ``load_weights`` and ``convolutionalize`` are only called when the backbone is
    used, so registering a spec never imports a framework. The defaults of the last two fit a
    PyTorch classifier with a ``features``/``forward_features`` trunk and an ``fc``/``classifier`` head
    stored in fcnx checkpoints: such a backbone needs only ``build``.
    """

    name: str
    framework: Literal["pytorch", "keras"]
    stride: int
    offset: int
    default_size: int
    build: BuildFn = field(repr=False, compare=False)
    load_weights: LoadWeightsFn = field(default=load_strict, repr=False, compare=False)
    convolutionalize: ConvolutionalizeFn = field(default=pooled_fcn, repr=False, compare=False)
    preprocess: Preprocess = Preprocess()
    padding: Literal["valid", "same"] = "valid"
    pretrained: tuple[str, ...] = ()
    shipped_weights: ShippedWeightsFn | None = field(default=None, repr=False, compare=False)
    requires: tuple[str, ...] = ()
    install_hint: str = ""
    description: str = ""
    plugin: str = ""

    def w_min(self, d: int) -> int:
        """Smallest input side whose final feature map has side ``d``."""
        return geometry.w_min(d, self.stride, self.offset)

    def pool_size(self, w: int) -> int:
        """Side ``D`` of the final feature map for input side ``w``."""
        return geometry.pool_size(w, self.stride, self.offset)

    def heatmap_side(self, side: int, kernel: int) -> int:
        """Heatmap cells along an input side when the FCN was made for input ``kernel``."""
        return geometry.heatmap_side(side, kernel, self.stride, self.offset)

    def heatmap_shape(self, height: int, width: int, kernel: int) -> tuple[int, int]:
        """Heatmap shape ``(h, w)`` for an input of ``height`` x ``width``."""
        return self.heatmap_side(height, kernel), self.heatmap_side(width, kernel)

    def formula(self) -> str:
        """The receptive-size formula as text, e.g. ``32D+43``."""
        return geometry.formula_text(self.stride, self.offset)

    def missing_requirements(self) -> list[str]:
        """Import names this backbone needs that are not installed."""
        return [mod for mod in self.requires if importlib.util.find_spec(mod) is None]
