"""Classifier accuracy on original vs cropped images (the paper's Table IV), and mislabel suspects.

Originals and crops go through the *same* resize policy: the whole region (the image, or the
box cut from it) is squashed to ``kernel x kernel`` with the ensemble's one interpolation
(bicubic, antialiased). The authors' code squashed originals but clipped and bicubic-resized
crops, so part of their gain could come from the interpolation rather than the crop.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fcnx import geometry
from fcnx.errors import FcnxError, UsageError
from fcnx.images import ImageItem, load_rgb
from fcnx.metrics import top_k_accuracy

Box = tuple[float, float, float, float]


def cut_box(pixels: np.ndarray, box: Box) -> np.ndarray:
    """The box ``(x, y, w, h)`` cut from ``pixels`` exactly as ``fcnx crop`` cuts its crops (:func:`geometry.pixel_box`)."""
    x1, y1, x2, y2 = geometry.pixel_box(box, pixels.shape[:2])
    return pixels[y1:y2, x1:x2]


@dataclass
class BoxIndex:
    """The boxes of a ``boxes.jsonl``, by image (its resolved path, or its ``file`` relative to the crop's
    output) and by category; see :func:`read_boxes`."""

    by_path: dict[str, dict[str | None, Box]] = field(default_factory=dict)
    by_file: dict[str, dict[str | None, Box]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.by_path)

    def find(self, item: ImageItem) -> Box | None:
        """The box of ``item``: the one for its label when the image has several, else the first; ``None`` if none."""
        entries = self.by_path.get(str(Path(item.path).resolve())) or self.by_file.get(item.rel.as_posix())
        if not entries:
            return None
        return entries.get(item.label) or next(iter(entries.values()))


def read_boxes(path: Path) -> BoxIndex:
    """Boxes of a ``boxes.jsonl`` from ``fcnx crop`` (or any file with the same fields).

    Each line is a JSON object with ``path`` (the image file; relative paths are taken from the
    current folder) and its box in upright original pixels, either as ``x, y, w, h`` fields or as
    a nested ``box`` object with those keys. Optional: ``category`` (the box's category: an image
    with several boxes is scored with the box of its label) and ``file`` (the image's path relative
    to the dataset root, used when ``path`` does not match, e.g. on another machine). Other fields
    are ignored; per image and category the first box counts.
    """
    index = BoxIndex()
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read boxes ({type(exc).__name__}: {exc})", path) from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            source = record.get("box", record)
            box = tuple(float(source[k]) for k in ("x", "y", "w", "h"))
            key = str(Path(record["path"]).resolve())
            category = record.get("category")
            file = record.get("file")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UsageError(f"line {number}: not a box record ({type(exc).__name__}: {exc})", path) from None
        if not all(math.isfinite(v) for v in box) or box[2] <= 0 or box[3] <= 0:
            raise UsageError(f"line {number}: empty or invalid box {box}", path)
        category = None if category is None else str(category)
        index.by_path.setdefault(key, {}).setdefault(category, box)
        if isinstance(file, str):
            index.by_file.setdefault(file, {}).setdefault(category, box)
    return index


@dataclass
class Scores:
    """Top-1/top-5 counts of one classifier on one side (original or cropped)."""

    top1: int = 0
    top5: int = 0
    total: int = 0

    def add(self, probs: np.ndarray, label: int) -> None:
        """Count one image whose class probabilities are ``probs`` (top-5 is top-all with fewer classes)."""
        self.top1 += int(top_k_accuracy(probs[None], [label], 1))
        self.top5 += int(top_k_accuracy(probs[None], [label], min(5, len(probs))))
        self.total += 1

    def rate(self, k: int) -> float:
        return (self.top1 if k == 1 else self.top5) / self.total if self.total else float("nan")


@dataclass
class Evaluation:
    """Per classifier (each net and the ensemble's mean), scores on the originals and on the crops."""

    names: list[str]
    original: dict[str, Scores] = field(default_factory=dict)
    cropped: dict[str, Scores] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        rows = []
        for name in self.names:
            row: dict[str, Any] = {"model": name, "images": self.original[name].total,
                                   "original_top1": self.original[name].rate(1), "original_top5": self.original[name].rate(5)}
            if name in self.cropped:
                row |= {"cropped_top1": self.cropped[name].rate(1), "cropped_top5": self.cropped[name].rate(5),
                        "delta_top1": self.cropped[name].rate(1) - self.original[name].rate(1)}
            rows.append(row)
        return rows


def classify(ensemble: Any, region: np.ndarray) -> np.ndarray:
    """Class probabilities ``nets x classes`` of an ``H x W x 3`` uint8 region squashed to the kernel."""
    import torch

    from fcnx.ensemble import resize

    tensor = torch.from_numpy(np.ascontiguousarray(region)).permute(2, 0, 1)[None].to(ensemble.device)
    probs = ensemble.probabilities(resize(tensor, (ensemble.kernel, ensemble.kernel)))
    return probs[0, :, :, 0, 0].cpu().numpy()


def boxes_of(boxes: BoxIndex) -> Callable[[ImageItem, np.ndarray], Box | None]:
    """``box_of`` for :func:`evaluate`: each image's box from a ``boxes.jsonl`` (:func:`read_boxes`)."""
    return lambda item, pixels: boxes.find(item)


def crops_of(cropper: Any) -> Callable[[ImageItem, np.ndarray], Box | None]:
    """``box_of`` for :func:`evaluate`: crop each image for its label with ``cropper`` now."""
    def box_of(item: ImageItem, pixels: np.ndarray) -> Box:
        box = cropper.crop_image(pixels, [item.label]).boxes[0]
        return box.x, box.y, box.w, box.h

    return box_of


def item_probabilities(
    ensemble: Any, item: ImageItem, box_of: Callable[[ImageItem, np.ndarray], Box | None] | None = None,
) -> list[np.ndarray] | str:
    """Class probabilities ``nets x classes`` of an image and, with ``box_of``, of its crop; or the one-line
    error of an unreadable image. :class:`UsageError` when ``box_of`` has no box for it."""
    try:
        pixels, _ = load_rgb(item.path)
    except FcnxError as exc:
        return str(exc)
    regions = [pixels]
    if box_of is not None:
        box = box_of(item, pixels)
        if box is None:
            raise UsageError("no box for this image (crop the same split first, or use --crop)", item.path)
        regions.append(cut_box(pixels, box))
    return [classify(ensemble, region) for region in regions]


def evaluate(
    ensemble: Any,
    items: Iterable[ImageItem],
    box_of: Callable[[ImageItem, np.ndarray], Box | None] | None = None,
    progress: Callable[[], None] | None = None,
    outcomes: Iterable[tuple[ImageItem, list[np.ndarray] | str]] | None = None,
) -> Evaluation:
    """Score every net of ``ensemble`` (and their mean, ``ensemble``) on labelled ``items``.

    ``box_of(item, pixels)`` gives the crop of an image (``None``: no crop side). Unreadable
    images are skipped and listed in ``Evaluation.skipped`` (in the order of ``items``).
    ``outcomes``: :func:`item_probabilities` of every item computed elsewhere, in any order
    (the Ray engine); ``box_of`` then only says whether they include crops.
    """
    items = list(items)
    names = list(ensemble.names) + (["ensemble"] if len(ensemble.names) > 1 else [])
    result = Evaluation(names, {n: Scores() for n in names}, {n: Scores() for n in names} if box_of else {})
    classes = {name: index for index, name in enumerate(ensemble.classes)}
    for item in items:
        if item.label not in classes:
            raise UsageError(f"label {item.label!r} is not a class of the nets", item.path)
    if outcomes is None:
        outcomes = ((item, item_probabilities(ensemble, item, box_of)) for item in items)
    skipped: dict[int, str] = {}
    position = {id(item): k for k, item in enumerate(items)}
    for item, outcome in outcomes:
        if isinstance(outcome, str):
            skipped[position[id(item)]] = outcome
        else:
            for scores, probs in zip([result.original, result.cropped], outcome):
                for name, row in zip(names, list(probs) + ([probs.mean(axis=0)] if "ensemble" in names else [])):
                    scores[name].add(row, classes[item.label])
        if progress:
            progress()
    result.skipped = [skipped[k] for k in sorted(skipped)]
    return result


@dataclass(frozen=True)
class Suspect:
    """An image whose label no net finds at any scale, with what the ensemble sees instead."""

    path: Path
    label: str
    other: str
    other_votes: int
    other_confidence: float
    box: Box

    def as_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "label": self.label, "other_category": self.other,
                "other_votes": self.other_votes, "other_mean_confidence": self.other_confidence,
                "x": self.box[0], "y": self.box[1], "w": self.box[2], "h": self.box[3]}


def rank_suspects(suspects: Iterable[Suspect]) -> list[Suspect]:
    """Most convincing first: more nets voting for the other category, then higher confidence, then path."""
    return sorted(suspects, key=lambda s: (-s.other_votes, -s.other_confidence, str(s.path)))


def find_suspects(cropper: Any, items: Iterable[ImageItem], progress: Callable[[], None] | None = None) -> tuple[list[Suspect], list[str]]:
    """The paper's mislabel signal: images for whose label no net votes at any scale, ranked.

    Returns the ranked suspects and the one-line errors of unreadable images.
    """
    from fcnx.cropper import CropFailure

    suspects, failures = [], []
    for result in cropper.crop_items(items):
        if progress:
            progress()
        if isinstance(result, CropFailure):
            failures.append(result.error)
            continue
        if result.boxes[0].found:
            continue
        seen = cropper.crop_image(result.item.path).boxes[0]  # no category, no label: the top class
        suspects.append(Suspect(result.item.path, result.item.label or "", seen.category, seen.votes,
                                seen.mean_confidence, (seen.x, seen.y, seen.w, seen.h)))
    return rank_suspects(suspects), failures
