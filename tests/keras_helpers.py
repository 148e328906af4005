"""Shared by the tests/test_keras_*.py files: skip without TensorFlow, small class lists."""

from __future__ import annotations

import importlib.util

import pytest

HAS_TF = importlib.util.find_spec("tensorflow") is not None and importlib.util.find_spec("keras") is not None
needs_tf = [
    pytest.mark.skipif(not HAS_TF, reason="TensorFlow/Keras not installed (pip install 'fcnx[keras]')"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]  # Keras' own numpy-2 deprecation notices
CLASSES = ["apple_pie", "bibimbap", "cannoli"]
KERAS_BACKBONES = [
    "keras_vgg16",
    "keras_vgg19",
    "keras_inception_v3",
    "keras_inception_resnet_v2",
    "keras_xception",
    "keras_resnet50",
]
