"""TensorFlow's "same" pooling for timm nets that run weights converted from Keras (``fcnx convert``).

timm's ports differ from Keras in two poolings, and nowhere else:

* Inception-v3's 3x3/stride-1 average pools count the zero padding (``count_include_pad=True``);
  Keras' ``AveragePooling2D(padding="same")`` averages the valid pixels only. A pre-hook on each
  pool branch's convolution rescales border cells by ``9 / valid pixels``.
* legacy Xception's 3x3/stride-2 max pools pad one pixel on both sides; TensorFlow pads an
  even-sized input only after it. They are swapped for timm's ``MaxPool2dSame``.

Inception-ResNet-v2 already matches (its pools exclude padding or do not pad).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _exclude_padding(module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    x = args[0]
    ones = torch.ones(1, 1, *x.shape[-2:], dtype=x.dtype, device=x.device)
    return (x / F.avg_pool2d(ones, 3, stride=1, padding=1),)


def use_keras_pooling(model: nn.Module) -> nn.Module:
    """Give ``model`` (timm inception_v3, legacy_xception or inception_resnet_v2) Keras' pooling semantics, in place."""
    from timm.layers.pool2d_same import MaxPool2dSame
    from timm.models.inception_v3 import InceptionA, InceptionC, InceptionE
    from timm.models.xception import Block

    for module in model.modules():
        if isinstance(module, (InceptionA, InceptionC, InceptionE)):
            module.branch_pool.register_forward_pre_hook(_exclude_padding)
        elif isinstance(module, Block):
            for index, layer in enumerate(module.rep):
                if isinstance(layer, nn.MaxPool2d) and not isinstance(layer, MaxPool2dSame):
                    module.rep[index] = MaxPool2dSame(layer.kernel_size, layer.stride)
    return model
