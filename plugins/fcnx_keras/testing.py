"""Helpers for tests and benchmarks: seeded Keras classifiers with sane batch-norm statistics, saved as real files.

Like :func:`fcnx.testing.calibrate_batchnorm`: random batch-norm statistics make deep nets'
outputs explode or vanish; one training-mode pass on random images with momentum 0 sets every
moving mean/variance to that batch's statistics, so outputs on random images are of order one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from fcnx.plugin import CheckpointMeta, get_backbone, sidecar_path
from fcnx_keras.classifier import KerasClassifier, leaf_layers
from fcnx_keras.runtime import keras, tf


def random_pixels(backbone: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Random RGB images normalized as ``backbone`` expects, ``N x H x W x 3``.

    Each image has its own brightness and contrast, so pooled features differ between images
    (on i.i.d. noise alone they are nearly equal, and a head's batch norm would divide by ~0).
    """
    pre = get_backbone(backbone).preprocess
    rng = np.random.default_rng(seed)
    low = rng.uniform(0, 160, (shape[0], 1, 1, 1))
    high = low + rng.uniform(32, 255 - low)
    pixels = (low + (high - low) * rng.uniform(0, 1, shape)).astype("float32")
    x = (pixels / 255 - np.asarray(pre.mean, dtype=np.float32)) / np.asarray(pre.std, dtype=np.float32)
    return np.ascontiguousarray(x[..., ::-1] if pre.channel_order == "BGR" else x, dtype="float32")


def calibrate_batchnorm(model: Any, inputs: np.ndarray) -> Any:
    """Set every BatchNormalization layer's moving statistics from one batch of ``inputs`` (``N x H x W x 3``)."""
    norms = [layer for layer in leaf_layers(model) if isinstance(layer, keras().layers.BatchNormalization)]
    momenta = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0
    model(inputs, training=True)
    for layer, momentum in zip(norms, momenta):
        layer.momentum = momentum
    return model


def random_classifier(
    backbone: str, classes: list[str], head: tuple[int, ...] = (), size: int | None = None, seed: int = 0
) -> KerasClassifier:
    """A seeded, batch-norm-calibrated random Keras classifier of ``backbone``."""
    spec = get_backbone(backbone)
    keras().utils.set_random_seed(seed)
    tf().config.experimental.enable_op_determinism()
    classifier = spec.build(len(classes), tuple(head), None)
    side = size or spec.default_size
    calibrate_batchnorm(classifier.model, random_pixels(backbone, (8, side, side, 3), seed))
    return classifier


def save_keras(
    classifier: KerasClassifier, path: str | Path, classes: list[str] | None = None, input_size: int | None = None
) -> Path:
    """Save the classifier's model as ``.keras``/``.h5`` (full model) or ``.weights.h5`` (weights only).

    With ``classes``, also write the ``<file>.json`` sidecar fcnx reads class names (and head) from.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".weights.h5"):
        classifier.model.save_weights(path)
    else:
        classifier.model.save(path)
    if classes is not None:
        spec = get_backbone(classifier.arch)
        meta = CheckpointMeta(
            arch=classifier.arch,
            classes=list(classes),
            input_size=input_size or spec.default_size,
            head=list(classifier.head),
        )
        sidecar_path(path).write_text(json.dumps(json.loads(meta.to_json()), indent=2), encoding="utf-8")
    return path
