"""Keras classifiers of the fcnx backbones: ``keras.applications`` bases with a dense head.

A :class:`KerasClassifier` holds one Keras model whose output is *logits* (a final softmax is
removed), and is callable like a PyTorch classifier: normalized ``N x 3 x H x W`` torch tensors
in, ``N x classes`` torch logits out.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fcnx.plugin import FcnxError
from fcnx_keras.runtime import KerasRunner, keras

#: layer classes allowed after the global pool, besides Dense: identities at inference time ...
INFERENCE_IDENTITY = (
    "Dropout",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "GaussianDropout",
    "GaussianNoise",
    "AlphaDropout",
    "ActivityRegularization",
)
#: ... and element-wise layers that act the same on ``N x C`` and ``N x h x w x C`` tensors
ELEMENTWISE = ("Activation", "ReLU", "LeakyReLU", "ELU", "Softmax")
POOLS = ("GlobalAveragePooling2D", "GlobalMaxPooling2D", "Flatten")


def leaf_layers(model: Any) -> Iterator[Any]:
    """The model's layers in order, nested models expanded, input layers left out."""
    k = keras()
    for layer in model.layers:
        if isinstance(layer, k.Model):
            yield from leaf_layers(layer)
        elif not isinstance(layer, k.layers.InputLayer):
            yield layer


@dataclass
class Parts:
    """A classifier cut at its global pool: ``base`` layers, the ``pool`` layer, the ``head`` layers after it."""

    base: list[Any]
    pool: Any
    head: list[Any]


def split(model: Any) -> Parts:
    """Cut ``model`` at its last global pool (or VGG's Flatten); ``ValueError`` if it has none.

    The last, because bases with squeeze-excitation blocks (EfficientNet, MobileNetV3, RegNetY)
    hold global pools of their own; a dense head never does.
    """
    layers = list(leaf_layers(model))
    for i in reversed(range(len(layers))):
        layer = layers[i]
        if type(layer).__name__ in POOLS:
            return Parts(layers[:i], layer, layers[i + 1 :])
    raise ValueError("has no global pooling (GlobalAveragePooling2D, GlobalMaxPooling2D) or Flatten layer")


def signature(layers: list[Any]) -> list[tuple[str, tuple[tuple[int, ...], ...]]]:
    """Layer classes and weight shapes: what must agree for two bases to be the same architecture."""
    return [(type(layer).__name__, tuple(tuple(w.shape) for w in layer.weights)) for layer in layers]


def is_softmax(layer: Any) -> bool:
    name = type(layer).__name__
    if name == "Softmax":
        return True
    activation = getattr(layer, "activation", None)
    return activation is not None and getattr(activation, "__name__", "") == "softmax"


def model_name(arch: str) -> str:
    """A Keras model name for backbone ``arch`` (Keras refuses the ``/`` of ``keras/<Application>``)."""
    return arch.replace("/", "_")


def application(app: str) -> Any:
    """The ``keras.applications`` constructor called ``app`` (e.g. ``"InceptionV3"``)."""
    return getattr(keras().applications, app)


def fresh_base(app: str) -> Any:
    """A randomly initialised feature extractor of any input size (``include_top=False``)."""
    return application(app)(include_top=False, weights=None, input_shape=(None, None, 3))


def dense_head(x: Any, hidden: tuple[int, ...], num_classes: int, dropout: float = 0.5) -> Any:
    """The Keras twin of :func:`fcnx.backbones.convolutionalize.dense_head`: Dense, BatchNormalization, ReLU, Dropout per hidden width."""
    layers = keras().layers
    for i, width in enumerate(hidden, 1):
        x = layers.Dense(width, name=f"head_dense_{i}")(x)
        x = layers.BatchNormalization(name=f"head_bn_{i}")(x)
        x = layers.Activation("relu", name=f"head_relu_{i}")(x)
        x = layers.Dropout(dropout, name=f"head_dropout_{i}")(x)
    return layers.Dense(num_classes, name="predictions")(x)


def build_model(arch: str, app: str, num_classes: int, head: tuple[int, ...], pretrained: str | None) -> Any:
    """A new Keras classifier: random init, or the ImageNet weights of ``keras.applications`` (downloaded).

    ImageNet-1k with no extra head keeps the application's own top (for VGG: Flatten, fc1, fc2, a
    fixed 224 input); any other class count or head gets a global average pool and a new dense head.
    """
    k = keras()
    constructor = application(app)
    own_top = pretrained is not None and num_classes == 1000 and not head
    try:
        if own_top:
            return constructor(include_top=True, weights=pretrained, classifier_activation=None)
        base = constructor(include_top=False, weights=pretrained, input_shape=(None, None, 3))
    except Exception as exc:
        if pretrained is None:
            raise
        raise FcnxError(
            f"cannot fetch Keras {pretrained!r} weights for {arch} ({type(exc).__name__}); without network "
            f"access pass a weight file (.keras, .h5, .weights.h5)"
        ) from None
    x = k.layers.GlobalAveragePooling2D(name="avg_pool")(base.output)
    return k.Model(base.input, dense_head(x, head, num_classes), name=model_name(arch))


class KerasClassifier:
    """A Keras classifier for backbone ``arch``, built on first use unless a weight file supplies the model."""

    def __init__(
        self, arch: str, app: str, num_classes: int, head: tuple[int, ...] = (), pretrained: str | None = None
    ):
        self.arch, self.app, self.num_classes, self.head, self.pretrained = arch, app, num_classes, head, pretrained
        self._model: Any = None
        self._runner: KerasRunner | None = None

    @property
    def model(self) -> Any:
        """The Keras model, whose output is logits."""
        if self._model is None:
            self._model = build_model(self.arch, self.app, self.num_classes, self.head, self.pretrained)
        return self._model

    def adopt(self, model: Any) -> None:
        """Use ``model`` (already checked against the architecture) instead of the built one; drop a final softmax."""
        k = keras()
        last = model.layers[-1]
        if type(last).__name__ in ("Softmax", "Activation") and is_softmax(last):
            model = k.Model(model.inputs, last.input, name=model.name)
        elif is_softmax(last):
            last.activation = k.activations.linear
        self._model = model
        self._runner = None

    def parts(self) -> Parts:
        return split(self.model)

    def __call__(self, x: Any) -> Any:
        """Logits ``N x classes`` of a normalized torch batch ``N x 3 x H x W``."""
        if self._runner is None:
            self._runner = KerasRunner(self.model)
        return self._runner(x)

    def __repr__(self) -> str:
        return f"KerasClassifier({self.arch!r}, classes={self.num_classes}, head={self.head})"
