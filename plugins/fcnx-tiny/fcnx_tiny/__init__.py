"""fcnx-tiny: four tiny stride-8 backbones, registered with fcnx like any third-party plugin.

This module is what the entry point ``tiny`` (group ``fcnx``) names. It only declares specs:
torch and the network code (:mod:`fcnx_tiny.nets`) are imported when a backbone is used, so
``fcnx --help`` and ``fcnx list-backbones`` stay fast. Each net has a ``features`` trunk and an
``fc`` head, so fcnx's default ``load_weights`` and ``convolutionalize`` fit them. ``docs/writing-a-plugin.md`` walks
through it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from fcnx.plugin import BackboneSpec, Preprocess, hookimpl

#: pixels in [0, 255] -> [-1, 1]
PREPROCESS = Preprocess(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
STRIDE = 8  # one stride for all four, so that they can form one ensemble
DEFAULT_SIZE = 56  # a kernel all four accept: D = 3, 7, 5, 7
#: the pretrained tag of the weights shipped in ``fcnx_tiny/weights/``: trained by ``scripts/train_tiny.sh``
#: on ``fcnx bench data --train-per-class 200`` (Fashion-MNIST objects on photo backgrounds, 10 classes)
SHIPPED_TAG = "fashion-bench"
WEIGHTS = Path(__file__).parent / "weights"

#: name -> (offset, padding, description); W_min(D) = STRIDE * D + offset, checked by tests/backbones/test_tiny_plugin.py
ARCHS: dict[str, tuple[int, Literal["valid", "same"], str]] = {
    "tiny_vgg": (28, "valid", "tiny VGG-like: 3 x (two valid 3x3 convs, 2x2 max pool), 64 channels"),
    "tiny_resnet": (-7, "same", "tiny ResNet-like: same-padded stem and three stride-2 basic blocks, 64 channels"),
    "tiny_inception": (
        9,
        "valid",
        "tiny Inception-like: valid stem, 3 x (valid reduction, 3-branch block), 96 channels",
    ),
    "tiny_mobilenet": (
        -5,
        "same",
        "tiny MobileNet-like: valid stem, 6 depthwise-separable convs (3 strided), 96 channels",
    ),
}


def build(name: str, num_classes: int, head: tuple[int, ...], pretrained: str | None) -> Any:
    """A randomly initialised classifier (shipped weights are loaded through :func:`shipped_weights`)."""
    from fcnx.plugin import FcnxError
    from fcnx_tiny import nets

    if pretrained:
        raise FcnxError(
            f"{name}: the shipped weights {WEIGHTS / (name + '.safetensors')} are missing; reinstall "
            f"fcnx-tiny, train the net (fcnx train) or pass a checkpoint file"
        )
    return nets.build(name, num_classes, head)


def shipped_weights(name: str, tag: str) -> Path | None:
    """The checkpoint shipped for ``tag``, when the package holds it."""
    path = WEIGHTS / f"{name}.safetensors"
    return path if tag == SHIPPED_TAG and path.is_file() else None


def spec(name: str) -> BackboneSpec:
    """The spec of one tiny backbone."""
    offset, padding, description = ARCHS[name]
    return BackboneSpec(
        name=name,
        framework="pytorch",
        stride=STRIDE,
        offset=offset,
        default_size=DEFAULT_SIZE,
        preprocess=PREPROCESS,
        padding=padding,
        requires=("torch",),
        install_hint="pip install torch",
        description=description,
        build=functools.partial(build, name),
        pretrained=(SHIPPED_TAG,),
        shipped_weights=functools.partial(shipped_weights, name),
    )


@hookimpl
def register_backbones(register: Callable[[BackboneSpec], None]) -> None:
    for name in ARCHS:
        register(spec(name))
