"""Everything a backbone plugin imports, in one module.

A typical PyTorch backbone needs only a spec::

    from fcnx.plugin import BackboneSpec, hookimpl

    @hookimpl
    def register_backbones(register):
        register(BackboneSpec(name="mynet", framework="pytorch", stride=32, offset=-31, default_size=224,
                              build=build_mynet))

The default ``load_weights`` (:func:`load_strict`) and ``convolutionalize`` (:func:`pooled_fcn`) cover a
classifier with a ``features``/``forward_features`` trunk and an ``fc``/``classifier``/``head`` layer.
Names that need torch (:class:`PooledFCN`, :func:`convolutionalize`, :func:`convolutionalize_head`,
:func:`dense_head`) are imported on first use, so that importing this module
to register specs stays free of deep-learning frameworks. ``docs/writing-a-plugin.md`` walks through a plugin.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from fcnx.backbones.checkpoint import CheckpointMeta, load_state_strict, read_meta, read_tensors
from fcnx.backbones.hookspecs import hookimpl
from fcnx.backbones.spec import BackboneSpec, Preprocess, load_strict, pooled_fcn
from fcnx.errors import FcnxError, UsageError, WeightsError

if TYPE_CHECKING:
    from fcnx.backbones.convolutionalize import PooledFCN, convolutionalize, convolutionalize_head, dense_head

_LAZY = {
    "PooledFCN": "fcnx.backbones.convolutionalize",
    "convolutionalize": "fcnx.backbones.convolutionalize",
    "convolutionalize_head": "fcnx.backbones.convolutionalize",
    "dense_head": "fcnx.backbones.convolutionalize",
}

__all__ = [
    "BackboneSpec",
    "CheckpointMeta",
    "FcnxError",
    "PooledFCN",
    "Preprocess",
    "UsageError",
    "WeightsError",
    "convolutionalize",
    "convolutionalize_head",
    "dense_head",
    "hookimpl",
    "load_state_strict",
    "load_strict",
    "pooled_fcn",
    "read_meta",
    "read_tensors",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fcnx.plugin' has no attribute {name!r}")
