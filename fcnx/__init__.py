"""fcnx: image classifiers as fully convolutional networks, and ensemble crops where they find a category.

The public face of the library. Names are imported on first use, so ``import fcnx`` stays free of torch::

    from fcnx import Cropper

    cropper = Cropper.from_nets(["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"], kernel=224)
    box = cropper.crop_image("coffee.jpg", ["espresso"]).boxes[0]

Plugin authors import :mod:`fcnx.plugin` instead.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from fcnx.version import __version__

#: public name -> the module that defines it
_EXPORTS = {
    "Cropper": "fcnx.engine.cropper",
    "Box": "fcnx.engine.results",
    "CropResult": "fcnx.engine.results",
    "CropFailure": "fcnx.engine.results",
    "Ensemble": "fcnx.engine.ensemble",
    "load_ensemble": "fcnx.engine.ensemble",
    "FCN": "fcnx.engine.fcn",
    "load_fcn": "fcnx.engine.fcn",
    "BackboneSpec": "fcnx.backbones.spec",
    "Preprocess": "fcnx.backbones.spec",
    "get_backbone": "fcnx.backbones.registry",
    "list_backbones": "fcnx.backbones.registry",
    "ImageItem": "fcnx.io.discovery",
    "discover": "fcnx.io.discovery",
    "run_crop": "fcnx.jobs.crop",
    "CropOptions": "fcnx.jobs.crop",
    "evaluate": "fcnx.jobs.scoring",
    "find_suspects": "fcnx.jobs.suspects",
    "run_evaluate": "fcnx.jobs.evaluate",
    "EvaluateOptions": "fcnx.jobs.evaluate",
    "run_suspects": "fcnx.jobs.suspects",
    "SuspectsOptions": "fcnx.jobs.suspects",
    "FcnxError": "fcnx.errors",
    "UsageError": "fcnx.errors",
    "WeightsError": "fcnx.errors",
}

__all__ = [
    "FCN",
    "BackboneSpec",
    "Box",
    "CropFailure",
    "CropOptions",
    "CropResult",
    "Cropper",
    "Ensemble",
    "EvaluateOptions",
    "FcnxError",
    "ImageItem",
    "Preprocess",
    "SuspectsOptions",
    "UsageError",
    "WeightsError",
    "__version__",
    "discover",
    "evaluate",
    "find_suspects",
    "get_backbone",
    "list_backbones",
    "load_ensemble",
    "load_fcn",
    "run_crop",
    "run_evaluate",
    "run_suspects",
]

if TYPE_CHECKING:
    from fcnx.backbones.registry import get_backbone, list_backbones
    from fcnx.backbones.spec import BackboneSpec, Preprocess
    from fcnx.engine.cropper import Cropper
    from fcnx.engine.ensemble import Ensemble, load_ensemble
    from fcnx.engine.fcn import FCN, load_fcn
    from fcnx.engine.results import Box, CropFailure, CropResult
    from fcnx.errors import FcnxError, UsageError, WeightsError
    from fcnx.io.discovery import ImageItem, discover
    from fcnx.jobs.crop import CropOptions, run_crop
    from fcnx.jobs.evaluate import EvaluateOptions, run_evaluate
    from fcnx.jobs.scoring import evaluate
    from fcnx.jobs.suspects import SuspectsOptions, find_suspects, run_suspects


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'fcnx' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
