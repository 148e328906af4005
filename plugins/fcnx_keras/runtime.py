"""Importing TensorFlow/Keras safely next to PyTorch, and moving tensors between the two.

Only this module imports TensorFlow, and only when a Keras backbone is actually used.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from typing import Any

from fcnx.plugin import UsageError

INSTALL_HINT = "pip install 'fcnx[keras]'  (TensorFlow + Keras 3)"


@functools.cache
def keras() -> Any:
    """The ``keras`` module on the TensorFlow backend, after one-time process setup.

    * PyTorch's native libraries (torch, triton, torchvision) are loaded *before* TensorFlow: loading
      triton's after TensorFlow's crashes the process (segmentation fault, TF 2.21 / torch 2.14).
    * TensorFlow's GPUs are set to grow memory on demand, so a PyTorch net on the same GPU still fits.
    """
    import torch  # noqa: F401  (load order, see above)

    for name in ("triton", "torchvision"):
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    try:
        import tensorflow as tf
    except ImportError:
        raise UsageError(f"the Keras backbones need TensorFlow: {INSTALL_HINT}") from None
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised by the user's own code: keep their setting
            pass
    import keras as keras_module

    if keras_module.backend.backend() != "tensorflow":
        raise UsageError(
            f"the Keras backbones run on Keras' TensorFlow backend, but KERAS_BACKEND is "
            f"{keras_module.backend.backend()!r}; unset it or set KERAS_BACKEND=tensorflow"
        )
    return keras_module


def tf() -> Any:
    """The ``tensorflow`` module (after :func:`keras`' setup)."""
    keras()
    import tensorflow

    return tensorflow


def tf_device(torch_device: Any) -> str:
    """The TensorFlow device matching a torch device: ``cuda:N`` -> ``/GPU:N`` when TensorFlow sees GPUs, else CPU."""
    if torch_device.type == "cuda" and tf().config.list_logical_devices("GPU"):
        return f"/GPU:{torch_device.index or 0}"
    return "/CPU:0"


class KerasRunner:
    """Runs a Keras model on torch tensors: ``N x 3 x H x W`` in, ``N x C [x h x w]`` out, on the input's device.

    The model is traced once by ``tf.function`` for any batch and spatial size.
    """

    def __init__(self, model: Any) -> None:
        tensorflow = tf()
        self.model = model
        spec = tensorflow.TensorSpec([None, None, None, 3], tensorflow.float32)
        self._fn = tensorflow.function(
            lambda x: model(x, training=False), input_signature=[spec], reduce_retracing=True
        )

    def __call__(self, x: Any) -> Any:
        import torch

        tensorflow = tf()
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected an N x 3 x H x W batch, got shape {tuple(x.shape)}")
        device = tf_device(x.device)
        nhwc = x.detach().permute(0, 2, 3, 1).to(torch.float32).contiguous()
        with tensorflow.device(device):
            if device.startswith("/GPU"):
                inp = tensorflow.experimental.dlpack.from_dlpack(torch.utils.dlpack.to_dlpack(nhwc))
            else:
                inp = tensorflow.convert_to_tensor(nhwc.cpu().numpy())
            out = self._fn(inp)
        if device.startswith("/GPU"):
            result = torch.utils.dlpack.from_dlpack(tensorflow.experimental.dlpack.to_dlpack(out))
        else:
            result = torch.from_numpy(out.numpy())
        result = result.to(x.device)
        return result.permute(0, 3, 1, 2).contiguous() if result.ndim == 4 else result
