"""Built-in plugin: PyTorch backbones from timm, convolutionalized exactly.

Any timm CNN is a backbone as ``timm/<model_name>`` (:mod:`fcnx_timm.generic` measures it on
first use). The six names below are aliases of that path with their formulas pinned as data, so
registering them imports nothing (``tests/backbones/test_timm_generic.py`` re-measures them);
see ``docs/backbones.md``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from fcnx.plugin import BackboneSpec, Preprocess, UsageError, hookimpl

INCEPTION = Preprocess(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
IMAGENET = Preprocess(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))

#: fcnx name -> (timm architecture, stride, offset, default size, preprocess, padding, pretrained tags, description)
ARCHS: dict[str, tuple[str, int, int, int, Preprocess, str, tuple[str, ...], str]] = {
    "vgg16": (
        "vgg16",
        32,
        0,
        224,
        IMAGENET,
        "same",
        ("vgg16.tv_in1k",),
        "VGG16; fc1/fc2 run as 7x7/1x1 convolutions, so its head pools D-6 cells",
    ),
    "vgg19": (
        "vgg19",
        32,
        0,
        224,
        IMAGENET,
        "same",
        ("vgg19.tv_in1k",),
        "VGG19; fc1/fc2 run as 7x7/1x1 convolutions, so its head pools D-6 cells",
    ),
    "inception_v3": (
        "inception_v3",
        32,
        43,
        299,
        INCEPTION,
        "valid",
        ("inception_v3.tv_in1k", "inception_v3.tf_in1k", "inception_v3.gluon_in1k"),
        "Inception-v3",
    ),
    "inception_resnet_v2": (
        "inception_resnet_v2",
        32,
        43,
        299,
        INCEPTION,
        "valid",
        ("inception_resnet_v2.tf_in1k",),
        "Inception-ResNet-v2",
    ),
    "xception": (
        "legacy_xception",
        32,
        -25,
        299,
        INCEPTION,
        "valid",
        ("legacy_xception.tf_in1k",),
        "Xception as in Keras (timm legacy_xception)",
    ),
    "resnet50": (
        "resnet50",
        32,
        -31,
        224,
        Preprocess(mean=IMAGENET.mean, std=IMAGENET.std),
        "same",
        ("resnet50.a1_in1k", "resnet50.tv_in1k"),
        "ResNet-50",
    ),
}
VGG_FC1 = 7
#: names of the generic timm backbones: ``timm/<model_name>``
PREFIX = "timm/"  # timm's VGG runs fc1 as a 7x7 convolution over the final feature map


def _get_attr_path(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _set_attr_path(obj: Any, path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for part in parents:
        obj = getattr(obj, part)
    setattr(obj, last, value)


def build(arch: str, num_classes: int, head: tuple[int, ...], pretrained: str | None) -> Any:
    """A timm classifier with ``num_classes`` outputs and an optional dense ``head`` of hidden widths."""
    import timm
    import torch

    from fcnx.plugin import dense_head
    from fcnx_timm.hub import create_pretrained

    if pretrained:
        model = create_pretrained(pretrained)
        if model.num_classes != num_classes:
            model.reset_classifier(num_classes)
    else:
        model = timm.create_model(arch, pretrained=False, num_classes=num_classes)
    if head:
        path = model.pretrained_cfg["classifier"]
        fc = _get_attr_path(model, path)
        if not isinstance(fc, torch.nn.Linear):
            raise UsageError(
                f"a dense head needs a Linear classifier; timm {arch} has a {type(fc).__name__} at {path!r}"
            )
        _set_attr_path(model, path, dense_head(fc.in_features, head, num_classes))
    return model.eval()


def load_weights(model: Any, path: Path) -> None:
    """Load an fcnx/timm state dict strictly; weights converted from Keras also get Keras' pooling."""
    from fcnx.plugin import load_state_strict, read_meta, read_tensors

    load_state_strict(model, read_tensors(path), path)
    meta = read_meta(path)
    if meta is not None and meta.extra.get("pooling") == "keras":
        from fcnx_timm.keras_pooling import use_keras_pooling

        use_keras_pooling(model)


def convolutionalize(model: Any, pool: int) -> Any:
    """The FCN of a timm classifier whose final feature map has side ``pool`` at the kernel size."""
    from fcnx_timm.generic import convolutionalize as generic_convolutionalize

    return generic_convolutionalize(model, pool)


def timm_spec(
    name: str,
    arch: str,
    stride: int,
    offset: int,
    size: int,
    preprocess: Preprocess,
    padding: Literal["valid", "same"],
    tags: tuple[str, ...],
    description: str,
) -> BackboneSpec:
    """The spec of timm model ``arch`` under the fcnx ``name``: timm's build, strict loading, the generic FCN."""
    return BackboneSpec(
        name=name,
        framework="pytorch",
        stride=stride,
        offset=offset,
        default_size=size,
        preprocess=preprocess,
        padding=padding,
        pretrained=tags,
        requires=("torch", "timm"),
        install_hint="pip install torch timm",
        description=description,
        build=functools.partial(build, arch),
        load_weights=load_weights,
        convolutionalize=convolutionalize,
    )


def _spec(name: str) -> BackboneSpec:
    arch, stride, offset, size, pre, padding, tags, description = ARCHS[name]
    return timm_spec(name, arch, stride, offset, size, pre, padding, tags, description)  # type: ignore[arg-type]


@hookimpl
def register_backbones(register: Callable[[BackboneSpec], None]) -> None:
    for name in ARCHS:
        register(_spec(name))


@hookimpl
def list_candidates(family: str, pattern: str) -> list[dict[str, Any]] | None:
    """``--all-timm``: timm's models matching ``pattern`` (:func:`fcnx_timm.generic.candidate_records`)."""
    if family != "timm":
        return None
    try:
        from fcnx_timm.generic import candidate_records
    except ImportError:
        raise UsageError("--all-timm needs timm: pip install torch timm") from None
    return candidate_records(pattern)


@hookimpl
def resolve_backbone(name: str) -> BackboneSpec | None:
    """``timm/<model_name>``: any timm CNN, measured on first use (:func:`fcnx_timm.generic.spec_for`)."""
    if not name.startswith(PREFIX):
        return None
    from fcnx_timm.generic import spec_for

    return spec_for(name[len(PREFIX) :])
