"""Built-in plugin: PyTorch backbones from timm, convolutionalized exactly.

Receptive-size formulas were measured on timm's implementations (``tests/test_receptive_sizes.py``
re-checks them): see ``docs/backbones.md``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from fcnx.backbones.hookspecs import hookimpl
from fcnx.backbones.spec import BackboneSpec, Preprocess

INCEPTION = Preprocess(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="bicubic")
IMAGENET = Preprocess(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), interpolation="bilinear")

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
        Preprocess(mean=IMAGENET.mean, std=IMAGENET.std, interpolation="bicubic"),
        "same",
        ("resnet50.a1_in1k", "resnet50.tv_in1k"),
        "ResNet-50",
    ),
}
VGG_FC1 = 7  # timm's VGG runs fc1 as a 7x7 convolution over the final feature map


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

    from fcnx.backbones.convolutionalize import dense_head
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
        _set_attr_path(model, path, dense_head(fc.in_features, head, num_classes))
    return model.eval()


def load_weights(model: Any, path: Path) -> None:
    """Load an fcnx/timm state dict strictly; weights converted from Keras also get Keras' pooling."""
    from fcnx.backbones.checkpoint import load_state_strict, read_meta, read_tensors

    load_state_strict(model, read_tensors(path), path)
    meta = read_meta(path)
    if meta is not None and meta.extra.get("pooling") == "keras":
        from fcnx_timm.keras_pooling import use_keras_pooling

        use_keras_pooling(model)


def convolutionalize(model: Any, pool: int) -> Any:
    """The FCN of a timm classifier whose final feature map has side ``pool`` at the kernel size."""
    from fcnx.backbones.convolutionalize import PooledFCN, convolutionalize_head

    classifier = _get_attr_path(model, model.pretrained_cfg["classifier"])
    pre_logits = getattr(model, "pre_logits", None)
    if pre_logits is not None and hasattr(pre_logits, "fc1"):  # VGG's ConvMlp
        pool = pool - VGG_FC1 + 1
        if pool < 1:
            raise ValueError(f"VGG needs a final feature map of at least {VGG_FC1} cells")
    else:
        pre_logits = None
    return PooledFCN(model.forward_features, pool, convolutionalize_head(classifier), pre_logits, owner=model)


def _spec(name: str) -> BackboneSpec:
    arch, stride, offset, size, pre, padding, tags, description = ARCHS[name]
    return BackboneSpec(
        name=name,
        framework="pytorch",
        stride=stride,
        offset=offset,
        default_size=size,
        preprocess=pre,
        padding=padding,
        pretrained=tags,
        requires=("torch", "timm"),
        install_hint="pip install torch timm",
        description=description,
        build=functools.partial(build, arch),
        load_weights=load_weights,
        convolutionalize=convolutionalize,
    )


@hookimpl
def register_backbones(register):
    for name in ARCHS:
        register(_spec(name))
