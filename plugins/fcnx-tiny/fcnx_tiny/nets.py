"""The three tiny networks (PyTorch). Each is ``features`` (a conv trunk) -> global average pool -> ``fc``.

Keeping that split, the FCN is always ``PooledFCN(features, pool, convolutionalize_head(fc))``.
"""

from __future__ import annotations

import torch
from torch import nn

from fcnx.plugin import dense_head


def conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0, groups: int = 1) -> nn.Sequential:
    """Convolution (no bias), batch-norm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class TinyClassifier(nn.Module):
    """A conv trunk, global average pooling and a dense head (one Linear, or hidden layers as in ``dense_head``)."""

    def __init__(self, features: nn.Module, width: int, num_classes: int, head: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.features = features
        self.fc = dense_head(width, head, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


def vgg_trunk() -> tuple[nn.Module, int]:
    """Three stages of two valid 3x3 convolutions and a 2x2 max pool: ``W_min(D) = 8D + 28``."""
    layers: list[nn.Module] = []
    cin = 3
    for cout in (16, 32, 64):
        layers += [conv_bn(cin, cout, 3), conv_bn(cout, cout, 3), nn.MaxPool2d(2)]
        cin = cout
    return nn.Sequential(*layers), cin


class BasicBlock(nn.Module):
    """ResNet's basic block with "same" padding; a strided 1x1 projection on the shortcut when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_bn(cin, cout, 3, stride, 1), nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        )
        self.shortcut = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


def resnet_trunk() -> tuple[nn.Module, int]:
    """A same-padded stem and three stride-2 basic blocks: side ``ceil(W / 8)``, so ``W_min(D) = 8D - 7``."""
    return nn.Sequential(
        conv_bn(3, 16, 3, 1, 1), BasicBlock(16, 24, 2), BasicBlock(24, 48, 2), BasicBlock(48, 64, 2)
    ), 64


class Mixed(nn.Module):
    """An Inception block: 1x1, 1x1->3x3 and avg-pool->1x1 branches, same padding, concatenated."""

    def __init__(self, cin: int, branch: int) -> None:
        super().__init__()
        self.b1 = conv_bn(cin, branch, 1)
        self.b3 = nn.Sequential(conv_bn(cin, branch, 1), conv_bn(branch, branch, 3, 1, 1))
        self.pool = nn.Sequential(nn.AvgPool2d(3, 1, 1, count_include_pad=False), conv_bn(cin, branch, 1))
        self.out_channels = 3 * branch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b3(x), self.pool(x)], dim=1)


class Reduction(nn.Module):
    """An Inception grid reduction: a valid stride-2 3x3 convolution beside a valid stride-2 3x3 max pool."""

    def __init__(self, cin: int, conv: int) -> None:
        super().__init__()
        self.conv = conv_bn(cin, conv, 3, 2)
        self.pool = nn.MaxPool2d(3, 2)
        self.out_channels = cin + conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.pool(x)], dim=1)


def inception_trunk() -> tuple[nn.Module, int]:
    """A valid 3x3 stem, then (reduction, mixed) three times: ``W_min(D) = 8D + 9``."""
    layers: list[nn.Module] = [conv_bn(3, 16, 3)]
    cin = 16
    for conv, branch in ((16, 16), (24, 24), (32, 32)):
        reduction = Reduction(cin, conv)
        mixed = Mixed(reduction.out_channels, branch)
        layers += [reduction, mixed]
        cin = mixed.out_channels
    return nn.Sequential(*layers), cin


def separable(cin: int, cout: int, stride: int) -> nn.Sequential:
    """MobileNet's depthwise-separable convolution: a same-padded depthwise 3x3, then a pointwise 1x1."""
    return nn.Sequential(conv_bn(cin, cin, 3, stride, 1, groups=cin), conv_bn(cin, cout, 1))


def mobilenet_trunk() -> tuple[nn.Module, int]:
    """A valid 3x3 stem, then three stride-2 depthwise-separable stages: side ``ceil((W - 2) / 8)``, ``W_min(D) = 8D - 5``."""
    return nn.Sequential(
        conv_bn(3, 16, 3),
        separable(16, 32, 2),
        separable(32, 32, 1),
        separable(32, 64, 2),
        separable(64, 64, 1),
        separable(64, 96, 2),
        separable(96, 96, 1),
    ), 96


TRUNKS = {
    "tiny_vgg": vgg_trunk,
    "tiny_resnet": resnet_trunk,
    "tiny_inception": inception_trunk,
    "tiny_mobilenet": mobilenet_trunk,
}


def build(name: str, num_classes: int, head: tuple[int, ...] = ()) -> TinyClassifier:
    """A randomly initialised tiny classifier, in eval mode."""
    features, width = TRUNKS[name]()
    return TinyClassifier(features, width, num_classes, tuple(head)).eval()
