"""Convolutionalization of Keras classifiers, and the torch module that runs the result.

global pool -> AveragePooling2D(D, strides=1) (max pool -> MaxPooling2D), Dense -> 1x1 Conv2D,
BatchNormalization -> BatchNormalization over channels, Dropout -> nothing (inference), element-wise
activations unchanged, a final softmax dropped (FCNs return logits). VGG's ImageNet top
(Flatten, fc1, fc2) runs fc1 as a 7x7 convolution and averages fc2's output over ``D - 6`` cells,
like timm's VGG. The FCN gets copies of the parameters; the classifier is left untouched.
"""

from __future__ import annotations

from typing import Any

import torch

from fcnx_keras.classifier import (
    ELEMENTWISE,
    INFERENCE_IDENTITY,
    KerasClassifier,
    Parts,
    fresh_base,
    is_softmax,
    leaf_layers,
    model_name,
    signature,
)
from fcnx_keras.runtime import KerasRunner, keras


def _conv_from_dense(dense: Any, side: int, activation: Any) -> Any:
    """A ``side x side`` Conv2D holding ``dense``'s parameters (its input flattened from ``side x side x C``)."""
    k = keras()
    kernel, *bias = dense.get_weights()
    channels = kernel.shape[0] // (side * side)
    conv = k.layers.Conv2D(dense.units, side, activation=activation, use_bias=dense.use_bias, name=f"{dense.name}_conv")
    conv.build((None, None, None, channels))
    conv.set_weights([kernel.reshape(side, side, channels, dense.units), *bias])
    return conv


def _convert(layer: Any, final: bool) -> Any | None:
    """The spatial twin of one head layer (``None``: nothing to do at inference)."""
    k = keras()
    name = type(layer).__name__
    if name == "Dense":
        activation = None if final and is_softmax(layer) else layer.activation
        return _conv_from_dense(layer, 1, activation)
    if name == "BatchNormalization":
        bn = k.layers.BatchNormalization(
            axis=-1,
            momentum=layer.momentum,
            epsilon=layer.epsilon,
            center=layer.center,
            scale=layer.scale,
            name=f"{layer.name}_2d",
        )
        bn.build((None, None, None, layer.moving_mean.shape[0]))
        bn.set_weights(layer.get_weights())
        return bn
    if name in INFERENCE_IDENTITY or (final and name in ("Softmax", "Activation") and is_softmax(layer)):
        return None
    if name in ELEMENTWISE:
        if name == "Softmax" and layer.axis not in (-1, [-1]):
            raise TypeError(f"cannot convolutionalize Softmax over axis {layer.axis}")
        return type(layer).from_config(layer.get_config() | {"name": f"{layer.name}_2d"})
    raise TypeError(
        f"cannot convolutionalize head layer {layer.name!r} ({name}); heads may hold Dense, "
        f"BatchNormalization, Dropout and element-wise activations"
    )


def base_copy(app: str, parts: Parts) -> Any:
    """A fresh any-size ``keras.applications.<app>`` feature extractor holding copies of ``parts.base``'s weights."""
    base = fresh_base(app)
    if signature(list(leaf_layers(base))) != signature(parts.base):
        raise TypeError(f"the classifier's base is not keras.applications.{app}")
    for target, source in zip(leaf_layers(base), parts.base):
        if source.weights:
            target.set_weights(source.get_weights())
    return base


def keras_fcn(classifier: KerasClassifier, pool: int) -> Any:
    """The Keras FCN of ``classifier`` for a final feature map of side ``pool`` (any input size)."""
    k = keras()
    parts = classifier.parts()
    base = base_copy(classifier.app, parts)
    head = list(parts.head)
    while head and type(head[-1]).__name__ in INFERENCE_IDENTITY:
        head.pop()
    inputs = k.Input((None, None, 3))
    x = base(inputs)
    pool_name = type(parts.pool).__name__
    if pool_name == "Flatten":  # VGG's ImageNet top: fc1 sees the whole fixed-size feature map
        side = parts.pool.input.shape[1]
        if not head or type(head[0]).__name__ != "Dense" or side is None:
            raise TypeError("a Flatten head must be followed by a Dense layer on a fixed-size feature map")
        if pool < side:
            raise ValueError(f"this head needs a final feature map of at least {side} cells, got {pool}")
        first, rest = head[0], head[1:]
        denses = [i for i, layer in enumerate(rest) if type(layer).__name__ == "Dense"]
        before, after = (rest[: denses[-1]], rest[denses[-1] :]) if denses else (rest, [])
        final_first = not denses and is_softmax(first)
        x = _conv_from_dense(first, side, None if final_first else first.activation)(x)
        x = _apply(before, x, final_index=None if after else len(before) - 1)
        x = k.layers.AveragePooling2D(pool - side + 1, strides=1, name="fcn_pool")(x)
        x = _apply(after, x, final_index=len(after) - 1)
    else:
        pooling = k.layers.AveragePooling2D if pool_name == "GlobalAveragePooling2D" else k.layers.MaxPooling2D
        x = pooling(pool, strides=1, name="fcn_pool")(x)
        x = _apply(head, x, final_index=len(head) - 1)
    return k.Model(inputs, x, name=f"{model_name(classifier.arch)}_fcn")


def _apply(layers: list[Any], x: Any, final_index: int | None) -> Any:
    for i, layer in enumerate(layers):
        converted = _convert(layer, final=i == final_index)
        if converted is not None:
            x = converted(x)
    return x


class KerasFCNModule(torch.nn.Module):
    """A Keras FCN as a torch module: normalized ``N x 3 x H x W`` torch in, ``N x C x h x w`` torch logits out.

    It holds no torch parameters; TensorFlow runs the FCN on the GPU matching the input's CUDA
    device, when it has one, else on the CPU.
    """

    def __init__(self, keras_model: Any) -> None:
        super().__init__()
        self.keras_model = keras_model
        self._runner = KerasRunner(keras_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._runner(x)


def convolutionalize(classifier: KerasClassifier, pool: int) -> KerasFCNModule:
    """Backbone spec hook: the torch-callable FCN of a Keras classifier."""
    return KerasFCNModule(keras_fcn(classifier, pool))
