"""Keras -> PyTorch: the weights of a Keras Inception-v3, Xception or Inception-ResNet-v2 classifier as the
state dict of fcnx's timm backbone of the same architecture.

The two nets are walked in the order they compute: Keras' graph depth-first from the output (a
concatenation's inputs in order, each branch down to where it starts), timm's modules in the
order a forward pass calls them. Both visit every branch of a block in the order of its
concatenation, so convolutions and batch norms pair up one to one; every pair's shapes are checked.

Layouts: Keras kernels are HWIO, torch's OIHW; a separable convolution is timm's depthwise +
pointwise pair; a Dense kernel is the transposed Linear weight. Keras' batch norms use
``epsilon=1e-3``; where timm's use another epsilon (legacy Xception: 1e-5) the difference is added
to the moving variance, which keeps ``var + eps`` -- all that inference uses -- exact.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import torch
from torch import nn

from fcnx.plugin import CheckpointMeta, FcnxError, get_backbone
from fcnx_keras.classifier import INFERENCE_IDENTITY, KerasClassifier, is_softmax
from fcnx_keras.fcn import base_copy

#: Keras backbone -> fcnx timm backbone with the same layer structure
TIMM_TWINS = {
    "keras_inception_v3": "inception_v3",
    "keras_xception": "xception",
    "keras_inception_resnet_v2": "inception_resnet_v2",
}


def keras_order(model: Any) -> list[Any]:
    """Layers of a functional ``model`` in depth-first post-order from its outputs, inputs visited in order."""
    order, seen = [], set()
    stack: list[tuple[Any, bool]] = [(t._keras_history.operation, False) for t in reversed(model.outputs)]
    while stack:
        layer, expanded = stack.pop()
        if id(layer) in seen:
            continue
        if expanded:
            seen.add(id(layer))
            order.append(layer)
            continue
        stack.append((layer, True))
        node = layer._inbound_nodes[0]
        for tensor in reversed(node.input_tensors):
            stack.append((tensor._keras_history.operation, False))
    return order


def torch_order(model: nn.Module, size: int) -> list[tuple[str, nn.Module]]:
    """Convolutions and batch norms of ``model.forward_features`` in the order a forward pass calls them."""
    names = {module: name for name, module in model.named_modules()}
    called: list[tuple[str, nn.Module]] = []
    hooks = [
        m.register_forward_pre_hook(lambda m, a: called.append((names[m], m)))
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))
    ]
    try:
        with torch.no_grad():
            # a timm model: torch types the attributes it adds as Tensor | Module
            cast(Any, model.to("meta")).forward_features(torch.empty(1, 3, size, size, device="meta"))
    finally:
        for hook in hooks:
            hook.remove()
    return called


def _np(variable: Any) -> np.ndarray:
    return np.asarray(variable.numpy() if hasattr(variable, "numpy") else variable, dtype=np.float32)


class _StateWriter:
    """Fills a torch state dict from Keras layers, checking every shape."""

    def __init__(self, reference: dict[str, torch.Tensor]) -> None:
        self.reference = reference
        self.state: dict[str, torch.Tensor] = {}

    def put(self, key: str, value: np.ndarray, source: str) -> None:
        expected = tuple(self.reference[key].shape)
        if tuple(value.shape) != expected:
            raise FcnxError(f"cannot map Keras layer {source!r} onto {key}: shape {tuple(value.shape)} vs {expected}")
        self.state[key] = torch.from_numpy(np.ascontiguousarray(value))

    def conv(self, name: str, kernel: np.ndarray, bias: np.ndarray | None, source: str) -> None:
        self.put(f"{name}.weight", kernel, source)
        if bias is not None:
            self.put(f"{name}.bias", bias, source)

    def batchnorm(self, name: str, bn: nn.Module, layer: Any) -> None:
        channels = layer.moving_mean.shape[0]
        self.put(f"{name}.weight", _np(layer.gamma) if layer.scale else np.ones(channels, np.float32), layer.name)
        self.put(f"{name}.bias", _np(layer.beta) if layer.center else np.zeros(channels, np.float32), layer.name)
        self.put(f"{name}.running_mean", _np(layer.moving_mean), layer.name)
        variance = _np(layer.moving_variance).astype(np.float64) + layer.epsilon - bn.eps
        if (variance < 0).any():
            raise FcnxError(f"batch norm {layer.name!r}: epsilon {layer.epsilon} cannot be expressed with eps {bn.eps}")
        self.put(f"{name}.running_var", variance.astype(np.float32), layer.name)
        if f"{name}.num_batches_tracked" in self.reference:
            self.state[f"{name}.num_batches_tracked"] = torch.zeros((), dtype=torch.long)


def _base_state(writer: _StateWriter, keras_base: Any, torch_modules: list[tuple[str, nn.Module]]) -> None:
    pending = list(torch_modules)

    def take(kind: type, source: str) -> tuple[str, nn.Module]:
        if not pending or not isinstance(pending[0][1], kind):
            found = type(pending[0][1]).__name__ if pending else "nothing"
            raise FcnxError(f"cannot map Keras layer {source!r} ({kind.__name__} expected, the timm net has {found})")
        return pending.pop(0)

    for layer in keras_order(keras_base):
        cls = type(layer).__name__
        if cls == "SeparableConv2D":
            name, _ = take(nn.Conv2d, layer.name)
            depthwise = _np(layer.depthwise_kernel)  # kh, kw, in, multiplier
            writer.conv(name, depthwise.transpose(2, 3, 0, 1).reshape(-1, 1, *depthwise.shape[:2]), None, layer.name)
            name, _ = take(nn.Conv2d, layer.name)
            writer.conv(
                name,
                _np(layer.pointwise_kernel).transpose(3, 2, 0, 1),
                _np(layer.bias) if layer.use_bias else None,
                layer.name,
            )
        elif cls == "Conv2D":
            name, _ = take(nn.Conv2d, layer.name)
            writer.conv(
                name, _np(layer.kernel).transpose(3, 2, 0, 1), _np(layer.bias) if layer.use_bias else None, layer.name
            )
        elif cls == "BatchNormalization":
            name, bn = take(nn.BatchNorm2d, layer.name)
            writer.batchnorm(name, bn, layer)
        elif layer.weights:
            raise FcnxError(f"cannot convert Keras layer {layer.name!r} ({cls})")
    if pending:
        raise FcnxError(f"the timm net has {len(pending)} more layers than the Keras one, first {pending[0][0]!r}")


def head_widths(head: list[Any]) -> tuple[int, ...]:
    """Hidden widths of a Keras head that fcnx's torch ``dense_head`` expresses: (Dense, BatchNorm, ReLU)* Dense.

    Dropout may sit anywhere; the last Dense may end in a softmax.
    """
    layers = [layer for layer in head if type(layer).__name__ not in INFERENCE_IDENTITY]
    if layers and type(layers[-1]).__name__ in ("Softmax", "Activation") and is_softmax(layers[-1]):
        layers = layers[:-1]
    pattern = [type(layer).__name__ for layer in layers]
    widths = []
    for i in range(0, len(layers) - 1, 3):
        block = layers[i : i + 3]
        relu = block[2:] and (
            type(block[2]).__name__ == "ReLU" or getattr(block[2].activation, "__name__", "") == "relu"
        )
        if (
            [type(layer).__name__ for layer in block[:2]] != ["Dense", "BatchNormalization"]
            or not relu
            or getattr(block[0].activation, "__name__", "") != "linear"
        ):
            raise FcnxError(
                f"the Keras head {pattern} is not (Dense, BatchNormalization, ReLU)* Dense, the dense head "
                f"fcnx's PyTorch backbones have"
            )
        widths.append(block[0].units)
    if not layers or type(layers[-1]).__name__ != "Dense" or len(layers) % 3 != 1:
        raise FcnxError(
            f"the Keras head {pattern} does not end in a Dense layer after whole (Dense, BatchNormalization, "
            f"ReLU) blocks"
        )
    return tuple(widths)


def _head_state(writer: _StateWriter, model: nn.Module, head: list[Any]) -> None:
    classifier_path = cast(dict[str, Any], model.pretrained_cfg)["classifier"]  # a timm model's dict
    layers = [layer for layer in head if type(layer).__name__ in ("Dense", "BatchNormalization")]
    modules = [
        (f"{classifier_path}.{name}" if name else classifier_path, m)
        for name, m in model.get_submodule(classifier_path).named_modules()
        if isinstance(m, (nn.Linear, nn.BatchNorm1d))
    ]
    for layer, (name, module) in zip(layers, modules, strict=True):
        if isinstance(module, nn.Linear):
            writer.conv(name, _np(layer.kernel).T, _np(layer.bias) if layer.use_bias else None, layer.name)
        else:
            writer.batchnorm(name, module, layer)


def convert(
    classifier: KerasClassifier, classes: list[str], input_size: int
) -> tuple[dict[str, torch.Tensor], CheckpointMeta]:
    """The fcnx PyTorch checkpoint (tensors, metadata) equivalent to a loaded Keras classifier."""
    if classifier.arch not in TIMM_TWINS:
        raise FcnxError(f"fcnx convert handles {', '.join(TIMM_TWINS)}, not {classifier.arch}")
    parts = classifier.parts()
    if type(parts.pool).__name__ != "GlobalAveragePooling2D":
        raise FcnxError(f"the Keras model pools with {type(parts.pool).__name__}; timm's nets average globally")
    widths = head_widths(parts.head)
    target = get_backbone(TIMM_TWINS[classifier.arch])
    model = target.build(len(classes), widths, None)
    writer = _StateWriter({k: v for k, v in model.state_dict().items()})
    _base_state(writer, base_copy(classifier.app, parts), torch_order(model, target.default_size))
    _head_state(writer, model, parts.head)
    missing = [key for key in writer.reference if key not in writer.state]
    if missing:
        raise FcnxError(f"conversion left {len(missing)} timm tensors unset, first {missing[0]!r}")
    meta = CheckpointMeta(
        arch=target.name,
        classes=list(classes),
        input_size=input_size,
        head=list(widths),
        extra={"pooling": "keras", "converted_from": classifier.arch},
    )
    return writer.state, meta
