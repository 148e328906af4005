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

from fcnx.backbones.checkpoint import (
    CheckpointMeta,
    check_weight_file,
    load_state_strict,
    read_meta,
    read_tensors,
    sidecar_path,
)
from fcnx.backbones.checkpoint import save as save_checkpoint
from fcnx.backbones.hookspecs import hookimpl
from fcnx.backbones.probe import ProbeError, cached_record, is_exact, measure_formula, measured
from fcnx.backbones.registry import get_backbone
from fcnx.backbones.spec import BackboneSpec, Preprocess, load_strict, pooled_fcn
from fcnx.errors import FcnxError, UsageError, WeightsError, did_you_mean
from fcnx.io.files import kind_of, read_class_list
from fcnx.method.geometry import formula_text, w_min

if TYPE_CHECKING:
    from fcnx.backbones.convolutionalize import (
        WINDOW_POOLS,
        FoldedFCN,
        PooledFCN,
        convolutionalize,
        convolutionalize_head,
        dense_head,
        window_pool,
    )

_LAZY = {
    "WINDOW_POOLS": "fcnx.backbones.convolutionalize",
    "FoldedFCN": "fcnx.backbones.convolutionalize",
    "window_pool": "fcnx.backbones.convolutionalize",
    "PooledFCN": "fcnx.backbones.convolutionalize",
    "convolutionalize": "fcnx.backbones.convolutionalize",
    "convolutionalize_head": "fcnx.backbones.convolutionalize",
    "dense_head": "fcnx.backbones.convolutionalize",
}

__all__ = [
    "WINDOW_POOLS",
    "BackboneSpec",
    "CheckpointMeta",
    "FcnxError",
    "FoldedFCN",
    "PooledFCN",
    "Preprocess",
    "ProbeError",
    "UsageError",
    "WeightsError",
    "cached_record",
    "check_weight_file",
    "convolutionalize",
    "convolutionalize_head",
    "dense_head",
    "did_you_mean",
    "formula_text",
    "get_backbone",
    "hookimpl",
    "is_exact",
    "kind_of",
    "load_fcn",
    "load_state_strict",
    "load_strict",
    "measure_formula",
    "measured",
    "pooled_fcn",
    "read_class_list",
    "read_meta",
    "read_tensors",
    "save_checkpoint",
    "sidecar_path",
    "w_min",
    "window_pool",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fcnx.plugin' has no attribute {name!r}")


def load_fcn(*args: Any, **kwargs: Any) -> Any:
    """:func:`fcnx.engine.fcn.load_fcn` (torch), imported on first call: for a plugin's own commands, never at registration."""
    return importlib.import_module("fcnx.engine.fcn").load_fcn(*args, **kwargs)
