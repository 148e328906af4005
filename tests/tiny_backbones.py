"""Tiny stride-32 backbones with known receptive-size formulas, registered inline as a plugin.

Three valid/padded layouts give the paper's three formulas at a fraction of the cost:
``tiny0`` 32D (like VGG), ``tiny43`` 32D+43 (like Inception), ``tiny_m25`` 32D-25 (like
Xception, through padding). ``tiny11`` (32D+11) is a second valid net for alignment tests;
``tiny_s16`` (16D) has four stride-2 layers: stride 16, for mixed ensembles.

Weights are either random (``fcnx.testing.random_checkpoint``) or *colour* weights
(:func:`color_checkpoint`): every convolution averages each colour channel, so the features are
mean colours, and the head scores ``red``/``green``/``blue`` by how much that channel exceeds
the others (``none`` is a constant). Such a net finds a red square exactly where it is.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from torch import nn

from fcnx.backbones import checkpoint, plugins, registry
from fcnx.backbones.convolutionalize import PooledFCN, convolutionalize_head
from fcnx.backbones.hookspecs import hookimpl
from fcnx.backbones.spec import BackboneSpec, Preprocess

COLOR_CLASSES = ["red", "green", "blue", "none"]
TRUNK = (2, 2, 0)
#: name -> (offset, layers as (kernel, stride, padding)); five stride-2 layers make the stride 32, four 16
LAYOUTS: dict[str, tuple[int, list[tuple[int, int, int]]]] = {
    "tiny0": (0, [TRUNK] * 5),
    "tiny43": (43, [(2, 1, 0), TRUNK, (2, 1, 0), TRUNK, (3, 1, 0), TRUNK, TRUNK, TRUNK, (2, 1, 0)]),
    "tiny11": (11, [(2, 1, 0), TRUNK, (2, 1, 0), TRUNK, (3, 1, 0), TRUNK, TRUNK, TRUNK]),
    "tiny_m25": (-25, [(2, 1, 13)] + [TRUNK] * 5),
    "tiny_s16": (0, [TRUNK] * 4),
}
PLAIN = Preprocess(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


class TinyNet(nn.Module):
    """Convolutions on 3 channels (ReLU between), global average pool, one dense layer."""

    def __init__(self, layers: list[tuple[int, int, int]], num_classes: int) -> None:
        super().__init__()
        modules: list[nn.Module] = []
        for k, s, p in layers:
            modules += [nn.Conv2d(3, 3, k, stride=s, padding=p), nn.ReLU()]
        self.features = nn.Sequential(*modules)
        self.fc = nn.Linear(3, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


def colorize(model: TinyNet) -> TinyNet:
    """Averaging convolutions and a colour-excess head (see the module docstring)."""
    with torch.no_grad():
        for conv in model.features:
            if isinstance(conv, nn.Conv2d):
                conv.weight.zero_()
                conv.bias.zero_()
                k = conv.kernel_size[0]
                for c in range(3):
                    conv.weight[c, c] = 1.0 / (k * k)
        model.fc.weight.zero_()
        model.fc.bias.zero_()
        for c in range(3):
            model.fc.weight[c] = -5.0
            model.fc.weight[c, c] = 10.0
        model.fc.bias[3] = 1.5
    return model


def _build(layout: str, num_classes: int, head: tuple[int, ...], pretrained: str | None) -> TinyNet:
    assert not head and pretrained is None, "tiny backbones have no hidden head and no pretrained weights"
    return TinyNet(LAYOUTS[layout][1], num_classes).eval()


def _load(model: TinyNet, path: Path) -> None:
    checkpoint.load_state_strict(model, checkpoint.read_tensors(path), path)


def _convolutionalize(model: TinyNet, pool: int) -> PooledFCN:
    return PooledFCN(model.features, pool, convolutionalize_head(model.fc), owner=model)


def spec(name: str) -> BackboneSpec:
    return BackboneSpec(
        name=name,
        framework="pytorch",
        stride=2 ** sum(s == 2 for _, s, _ in LAYOUTS[name][1]),
        offset=LAYOUTS[name][0],
        default_size=299,
        preprocess=PLAIN,
        padding="same" if name == "tiny_m25" else "valid",
        description="test backbone",
        build=functools.partial(_build, name),
        load_weights=_load,
        convolutionalize=_convolutionalize,
    )


class TinyPlugin:
    @hookimpl
    def register_backbones(self, register):
        for name in LAYOUTS:
            register(spec(name))


def register() -> TinyPlugin:
    """Register the tiny backbones (for subprocesses: call before ``fcnx.cli.main``)."""
    plugins.load_plugins()
    plugin = TinyPlugin()
    plugins.pm.register(plugin, name="tiny-test-backbones")
    registry.refresh()
    return plugin


def color_checkpoint(path: Path, name: str, classes: list[str] | None = None, input_size: int = 299) -> Path:
    """A checkpoint of ``name`` with colour weights (classes ``COLOR_CLASSES`` unless renamed)."""
    classes = classes or COLOR_CLASSES
    model = colorize(TinyNet(LAYOUTS[name][1], len(classes)))
    meta = checkpoint.CheckpointMeta(arch=name, classes=list(classes), input_size=input_size)
    return checkpoint.save(path, model.state_dict(), meta)


def random_tiny_checkpoint(path: Path, name: str, classes: list[str], seed: int = 0, input_size: int = 299) -> Path:
    """A checkpoint of ``name`` with seeded random weights: colour weights perturbed, and a random head.

    (A default random initialisation of such thin nets gives nearly the same output everywhere.)
    """
    generator = torch.Generator().manual_seed(seed)
    model = colorize(TinyNet(LAYOUTS[name][1], len(classes)))
    with torch.no_grad():
        for conv in model.features:
            if isinstance(conv, nn.Conv2d):
                conv.weight.mul_(1 + 0.5 * torch.randn(conv.weight.shape, generator=generator))
        model.fc.weight.copy_(torch.randn(model.fc.weight.shape, generator=generator) * 8.0)
        model.fc.bias.copy_(torch.randn(model.fc.bias.shape, generator=generator))
    meta = checkpoint.CheckpointMeta(arch=name, classes=list(classes), input_size=input_size)
    return checkpoint.save(path, model.state_dict(), meta)
