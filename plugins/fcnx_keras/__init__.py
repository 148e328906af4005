"""Built-in plugin: Keras (TensorFlow) backbones from ``keras.applications``, convolutionalized exactly.

Registering costs nothing: TensorFlow is imported only when one of these backbones is built,
loaded or convolutionalized. Any other ``keras.applications`` CNN is ``keras/<Application>``
(:mod:`fcnx_keras.generic` measures it on first use). Formulas were measured on Keras 3.15 / TensorFlow 2.21
(``tests/keras/test_keras_receptive_sizes.py`` re-checks them); see ``docs/keras.md``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from fcnx.plugin import BackboneSpec, Preprocess, hookimpl

#: Keras ``caffe`` mode: BGR, ImageNet mean subtracted, no scaling (mean listed RGB, in 1/255 units)
CAFFE = Preprocess(
    mean=(123.68 / 255, 116.779 / 255, 103.939 / 255),
    std=(1 / 255, 1 / 255, 1 / 255),
    channel_order="BGR",
)
#: Keras ``tf`` mode: pixels scaled to [-1, 1]
TF_MODE = Preprocess(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))

#: fcnx name -> (keras.applications constructor, stride, offset, default size, preprocess, padding, description)
ARCHS: dict[str, tuple[str, int, int, int, Preprocess, str, str]] = {
    "keras_vgg16": ("VGG16", 32, 0, 224, CAFFE, "same", "VGG16 (Keras); ImageNet top: fc1 as a 7x7 conv, pool D-6"),
    "keras_vgg19": ("VGG19", 32, 0, 224, CAFFE, "same", "VGG19 (Keras); ImageNet top: fc1 as a 7x7 conv, pool D-6"),
    "keras_inception_v3": ("InceptionV3", 32, 43, 299, TF_MODE, "valid", "Inception-v3 (Keras)"),
    "keras_inception_resnet_v2": ("InceptionResNetV2", 32, 43, 299, TF_MODE, "valid", "Inception-ResNet-v2 (Keras)"),
    "keras_xception": ("Xception", 32, -25, 299, TF_MODE, "valid", "Xception (Keras; valid stem, 'same' blocks)"),
    "keras_resnet50": ("ResNet50", 32, -31, 224, CAFFE, "same", "ResNet-50 (Keras)"),
}
REQUIRES = ("tensorflow", "keras")
#: names of the generic Keras backbones: ``keras/<Application>``
PREFIX = "keras/"


def build(name: str, app: str, num_classes: int, head: tuple[int, ...], pretrained: str | None) -> Any:
    """A :class:`~fcnx_keras.classifier.KerasClassifier` (the Keras model is created on first use)."""
    from fcnx_keras.classifier import KerasClassifier

    return KerasClassifier(name, app, num_classes, tuple(head), pretrained)


def load_weights(classifier: Any, path: Path) -> None:
    """Load a Keras full-model (.keras, .h5) or weights-only (.weights.h5, .h5) file, safely."""
    from fcnx_keras.files import load_into

    load_into(classifier, Path(path))


def convolutionalize(classifier: Any, pool: int) -> Any:
    """The torch-callable FCN of a Keras classifier."""
    from fcnx_keras.fcn import convolutionalize as keras_convolutionalize

    return keras_convolutionalize(classifier, pool)


def keras_spec(
    name: str,
    app: str,
    stride: int,
    offset: int,
    size: int,
    preprocess: Preprocess,
    padding: Literal["valid", "same"],
    pretrained: tuple[str, ...],
    description: str,
) -> BackboneSpec:
    """The spec of ``keras.applications.<app>`` under the fcnx ``name``."""
    from fcnx_keras.runtime import INSTALL_HINT

    return BackboneSpec(
        name=name,
        framework="keras",
        stride=stride,
        offset=offset,
        default_size=size,
        preprocess=preprocess,
        padding=padding,
        pretrained=pretrained,
        requires=REQUIRES,
        install_hint=INSTALL_HINT,
        description=description,
        build=functools.partial(build, name, app),
        load_weights=load_weights,
        convolutionalize=convolutionalize,
    )


def _spec(name: str) -> BackboneSpec:
    app, stride, offset, size, pre, padding, description = ARCHS[name]
    return keras_spec(name, app, stride, offset, size, pre, padding, ("imagenet",), description)  # type: ignore[arg-type]


@hookimpl
def register_backbones(register: Callable[[BackboneSpec], None]) -> None:
    for name in ARCHS:
        register(_spec(name))


@hookimpl
def resolve_backbone(name: str) -> BackboneSpec | None:
    """``keras/<Application>``: any ``keras.applications`` CNN, measured on first use (:mod:`fcnx_keras.generic`)."""
    if not name.startswith(PREFIX):
        return None
    from fcnx_keras.generic import spec_for

    return spec_for(name[len(PREFIX) :])


@hookimpl
def register_commands(cli: Any) -> None:
    from fcnx_keras.commands import convert_cmd

    cli.add_command(convert_cmd)
