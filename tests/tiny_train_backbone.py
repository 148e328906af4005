"""A tiny trainable stride-32 backbone (32D, batch-norm, a stem and four blocks), registered inline.

It follows timm's conventions that ``fcnx train`` relies on: ``get_classifier()`` names the head,
``group_matcher()`` the blocks, ``forward_features()`` the trunk; ``head`` widths build
:func:`fcnx.backbones.convolutionalize.dense_head`. On 64 x 64 inputs it trains in milliseconds per batch.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn

from fcnx.backbones import checkpoint, plugins, registry
from fcnx.backbones.convolutionalize import PooledFCN, convolutionalize_head, dense_head
from fcnx.backbones.hookspecs import hookimpl
from fcnx.backbones.spec import BackboneSpec, Preprocess

NAME = "tiny_train"
WIDTHS = (3, 8, 12, 16, 24, 32)
COLORS = {"red": (220, 40, 40), "green": (40, 190, 60), "blue": (40, 70, 220)}


def _layer(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 2, stride=2), nn.BatchNorm2d(cout), nn.ReLU())


class TinyTrainNet(nn.Module):
    def __init__(self, num_classes: int, head: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.stem = _layer(WIDTHS[0], WIDTHS[1])
        self.blocks = nn.Sequential(*(_layer(a, b) for a, b in zip(WIDTHS[1:-1], WIDTHS[2:])))
        self.fc = dense_head(WIDTHS[-1], head, num_classes) if head else nn.Linear(WIDTHS[-1], num_classes)
        self.num_classes = num_classes

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x).mean(dim=(2, 3)))

    def get_classifier(self) -> nn.Module:
        return self.fc

    def group_matcher(self, coarse: bool = False) -> dict[str, str]:
        return {"stem": r"^stem", "blocks": r"^blocks\.(\d+)"}


def _build(num_classes: int, head: tuple[int, ...], pretrained: str | None) -> TinyTrainNet:
    if pretrained:
        from fcnx.errors import FcnxError

        raise FcnxError(f"cannot fetch pretrained weights {pretrained!r} (no network)")
    return TinyTrainNet(num_classes, tuple(head)).eval()


def _load(model: TinyTrainNet, path: Path) -> None:
    checkpoint.load_state_strict(model, checkpoint.read_tensors(path), path)


def _convolutionalize(model: TinyTrainNet, pool: int) -> PooledFCN:
    return PooledFCN(model.forward_features, pool, convolutionalize_head(model.fc), owner=model)


SPEC = BackboneSpec(
    name=NAME,
    framework="pytorch",
    stride=32,
    offset=0,
    default_size=64,
    preprocess=Preprocess(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)),
    pretrained=("tiny.hub",),
    description="trainable test backbone",
    build=_build,
    load_weights=_load,
    convolutionalize=_convolutionalize,
)


class TinyTrainPlugin:
    @hookimpl
    def register_backbones(self, register):
        register(SPEC)


def register() -> TinyTrainPlugin:
    """Register the backbone (in a subprocess: before ``fcnx.cli.main``)."""
    plugins.load_plugins()
    plugin = TinyTrainPlugin()
    plugins.pm.register(plugin, name="tiny-train-backbone")
    registry.refresh()
    return plugin


def shape_image(color: tuple[int, int, int], rng: random.Random, size: tuple[int, int] = (80, 72)) -> Image.Image:
    """A noisy grey picture with a coloured disc or square somewhere in it."""
    width, height = size
    noise = np.random.default_rng(rng.randrange(2**32)).integers(90, 160, (height, width, 3), dtype=np.uint8)
    image = Image.fromarray(noise)
    r = rng.randrange(14, 24)
    x, y = rng.randrange(r, width - r), rng.randrange(r, height - r)
    draw = ImageDraw.Draw(image)
    (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x - r, y - r, x + r, y + r], fill=color)
    return image


def make_food101(root: Path, train: int = 12, test: int = 4, seed: int = 0) -> Path:
    """A Food-101-layout root: classes red/green/blue, ``train`` + ``test`` JPEGs each."""
    rng = random.Random(seed)
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "classes.txt").write_text("".join(f"{c}\n" for c in COLORS))
    lists: dict[str, list[str]] = {"train": [], "test": []}
    for name, color in COLORS.items():
        (root / "images" / name).mkdir(parents=True)
        for k in range(train + test):
            shape_image(color, rng).save(root / "images" / name / f"{k}.jpg", quality=92)
            lists["train" if k < train else "test"].append(f"{name}/{k}")
    for split, lines in lists.items():
        (root / "meta" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def make_folders(root: Path, per_class: int = 4, seed: int = 1, splits: tuple[str, ...] = ()) -> Path:
    """torchvision ImageFolder layout: ``root[/split]/<class>/<n>.png``."""
    rng = random.Random(seed)
    for split in splits or ("",):
        for name, color in COLORS.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for k in range(per_class):
                shape_image(color, rng).save(folder / f"{k}.png")
    return root
