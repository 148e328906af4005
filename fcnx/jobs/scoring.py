"""Classifier accuracy on original vs cropped images (the paper's Table IV), and the boxes of a ``boxes.jsonl``.

Originals and crops go through the *same* resize policy: the whole region (the image, or the
box cut from it) is squashed to ``kernel x kernel`` (each net's own in a mixed ensemble) with the ensemble's one interpolation
(bicubic, antialiased). The authors' code squashed originals but clipped and bicubic-resized
crops, so part of their gain could come from the interpolation rather than the crop.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fcnx.errors import FcnxError, UsageError, one_line
from fcnx.io.decoding import load_rgb
from fcnx.io.discovery import ImageItem
from fcnx.io.journal import read_box_lines
from fcnx.method import geometry
from fcnx.method.geometry import XYWH
from fcnx.method.metrics import top_k_accuracy

if TYPE_CHECKING:
    from fcnx.engine.cropper import Cropper
    from fcnx.engine.ensemble import Ensemble


def cut_box(pixels: np.ndarray, box: XYWH) -> np.ndarray:
    """The box ``(x, y, w, h)`` cut from ``pixels`` exactly as ``fcnx crop`` cuts its crops (:func:`geometry.pixel_box`)."""
    x1, y1, x2, y2 = geometry.pixel_box(box, pixels.shape[:2])
    return pixels[y1:y2, x1:x2]


def _meets(box: XYWH, size: tuple[int, int]) -> bool:
    """Whether the box ``(x, y, w, h)`` shares some area with an image of ``size`` ``(height, width)``."""
    x, y, w, h = box
    return x < size[1] and y < size[0] and x + w > 0 and y + h > 0


@dataclass
class BoxIndex:
    """The boxes of a ``boxes.jsonl``, by image (its resolved path, or its ``file`` relative to the crop's
    output) and by category; see :func:`read_boxes`."""

    by_path: dict[str, dict[str | None, XYWH]] = field(default_factory=dict)
    by_file: dict[str, dict[str | None, XYWH]] = field(default_factory=dict)
    #: the upright ``(height, width)`` of the image the boxes were found in, where a record gives it
    size_by_path: dict[str, tuple[int, int]] = field(default_factory=dict)
    size_by_file: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: one line each, not fatal: a last line cut by a killed run
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.by_path)

    def find(self, item: ImageItem) -> XYWH | None:
        """The box of ``item``: the one for its label when the image has several, else the first; ``None`` if none."""
        # realpath, not Path.resolve: no error on a link loop
        entries = self.by_path.get(os.path.realpath(item.path)) or self.by_file.get(item.rel.as_posix())
        if not entries:
            return None
        return entries.get(item.label) or next(iter(entries.values()))

    def box_of(self, item: ImageItem, pixels: np.ndarray) -> XYWH | None:
        """:meth:`find`; a box found in an image of another size than ``pixels`` (upright, full size) is an
        :class:`FcnxError` naming the image: its coordinates are those of another version of it."""
        box = self.find(item)
        key = os.path.realpath(item.path)
        found_in = self.size_by_path.get(key) if key in self.by_path else self.size_by_file.get(item.rel.as_posix())
        height, width = pixels.shape[:2]
        if box is not None and found_in is not None and found_in != (height, width):
            raise FcnxError(
                f"its box was found in a {found_in[1]}x{found_in[0]} image, this one is {width}x{height}: "
                f"a box of another version of it?",
                item.path,
            )
        return box


def read_boxes(path: Path) -> BoxIndex:
    """Boxes of a ``boxes.jsonl`` from ``fcnx crop`` (or any file with the same fields), read as box lines
    (:func:`fcnx.io.journal.read_box_lines`).

    Each line is a JSON object with ``path`` (the image file; relative paths are taken from the
    current folder) and its box in upright original pixels, either as ``x, y, w, h`` fields or as
    a nested ``box`` object with those keys. Optional: ``category`` (the box's category: an image
    with several boxes is scored with the box of its label), ``file`` (the image's path relative
    to the dataset root, used when ``path`` does not match, e.g. on another machine), and ``width``
    and ``height`` (the upright size of the image the box was found in: :meth:`BoxIndex.box_of`
    refuses the box for an image of another size). Other fields are ignored. A last line cut by a
    killed run is dropped with a warning, and per image and category the last record counts (a resumed run's).
    """
    index = BoxIndex()
    for _, line in read_box_lines(path, index.warnings):
        key = os.path.realpath(line.path)
        index.by_path.setdefault(key, {})[line.category] = line.box
        size = line.size if line.size is not None and min(line.size) > 0 else None
        if size is not None:
            index.size_by_path[key] = size
        if line.file is not None:
            index.by_file.setdefault(line.file, {})[line.category] = line.box
            if size is not None:
                index.size_by_file[line.file] = size
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
            row: dict[str, Any] = {
                "model": name,
                "images": self.original[name].total,
                "original_top1": self.original[name].rate(1),
                "original_top5": self.original[name].rate(5),
            }
            if name in self.cropped:
                row |= {
                    "cropped_top1": self.cropped[name].rate(1),
                    "cropped_top5": self.cropped[name].rate(5),
                    "delta_top1": self.cropped[name].rate(1) - self.original[name].rate(1),
                }
            rows.append(row)
        return rows

    def merge(self, other: Evaluation) -> None:
        """Add the counts and skipped images of ``other``, the evaluation of other images by the same nets."""
        for mine, theirs in ((self.original, other.original), (self.cropped, other.cropped)):
            for name, scores in theirs.items():
                mine[name].top1 += scores.top1
                mine[name].top5 += scores.top5
                mine[name].total += scores.total
        self.skipped += other.skipped


def squash(ensemble: Ensemble, region: np.ndarray) -> dict[tuple[int, int], Any]:
    """An ``H x W x 3`` uint8 region as the ``3 x K x K`` float tensors (on the ensemble's device) the nets see.

    One per kernel ``K`` of the nets (one in all unless the ensemble is mixed), keyed by ``(K, K)``.
    """
    import torch

    from fcnx.engine.ensemble import resize

    tensor = torch.from_numpy(np.ascontiguousarray(region)).permute(2, 0, 1)[None].to(ensemble.device)
    shapes = dict.fromkeys(ensemble.input_sizes((ensemble.kernel, ensemble.kernel)))
    return {shape: resize(tensor, shape)[0] for shape in shapes}


def crops_of(cropper: Cropper) -> Callable[[ImageItem, np.ndarray], XYWH]:
    """``box_of`` for :func:`evaluate` that crops each image for its label with ``cropper``."""

    def box_of(item: ImageItem, pixels: np.ndarray) -> XYWH:
        assert item.label is not None  # evaluate() refuses unlabelled items before asking for a box
        box = cropper.crop_image(pixels, [item.label]).boxes[0]
        return box.x, box.y, box.w, box.h

    return box_of


def classify_batch(ensemble: Ensemble, squashed: Sequence[dict[tuple[int, int], Any]]) -> np.ndarray:
    """Class probabilities ``B x nets x classes`` of regions already :func:`squash`-ed, in one forward pass."""
    import torch

    inputs = {
        shape: torch.stack([s[shape] for s in squashed]).contiguous(memory_format=torch.channels_last)
        for shape in squashed[0]
    }
    return ensemble.probabilities_of(inputs, (ensemble.kernel, ensemble.kernel))[:, :, :, 0, 0].cpu().numpy()


#: one image's outcome: per side (``original``, ``cropped``) per classifier ``[top1, top5]`` hits (0 or 1),
#: or the one-line error that skipped it
Outcome = dict[str, dict[str, list[int]]] | str


def classifier_names(nets: Sequence[str]) -> list[str]:
    """What is scored: each net, and their mean (``ensemble``) when there are several."""
    return list(nets) + (["ensemble"] if len(nets) > 1 else [])


def is_outcome(value: object, names: Sequence[str], cropped: bool) -> bool:
    """Whether ``value`` (read back from a journal) is an :data:`Outcome` of classifiers ``names``."""
    if isinstance(value, str):
        return True
    sides = {"original", "cropped"} if cropped else {"original"}
    return (
        isinstance(value, dict)
        and set(value) == sides
        and all(
            isinstance(hits, dict)
            and sorted(hits) == sorted(names)
            and all(
                isinstance(h, list) and len(h) == 2 and all(type(v) is int and v in (0, 1) for v in h)
                for h in hits.values()
            )
            for hits in value.values()
        )
    )


def _skip_line(exc: FcnxError, item: ImageItem) -> str:
    """``exc`` as a line naming ``item`` (a box's error may name another file)."""
    if exc.path == item.path:
        return str(exc)
    return str(FcnxError(str(exc).removeprefix(f"{one_line(exc.path)}: "), item.path))


def score_items(
    ensemble: Ensemble,
    items: Iterable[ImageItem],
    box_of: Callable[[ImageItem, np.ndarray], XYWH | None] | None = None,
    batch_size: int = 1,
) -> Iterator[tuple[ImageItem, Outcome]]:
    """Each of ``items`` with its :data:`Outcome`, in order, as soon as its regions have gone through the nets.

    Regions (originals and crops) go through the nets ``batch_size`` at a time; a batch whose outputs
    are not finite (NaN weights) is run again one region at a time, and an image with such a region
    is skipped with that error, like an unreadable one. See :func:`evaluate`.
    """
    from fcnx.engine.ensemble import NonFiniteOutput

    if batch_size < 1:
        raise UsageError(f"the batch size must be at least 1, got {batch_size}")
    names = classifier_names(ensemble.names)
    classes = {name: index for index, name in enumerate(ensemble.classes)}
    #: per image in flight: item, outcome so far, regions not yet scored
    waiting: list[list[Any]] = []
    pending: list[tuple[list[Any], str, int, Any]] = []

    def classify(regions: list[tuple[list[Any], str, int, Any]]) -> None:
        try:
            batch = classify_batch(ensemble, [t for *_, t in regions])
        except NonFiniteOutput as exc:
            if len(regions) > 1:
                half = len(regions) // 2
                classify(regions[:half])
                classify(regions[half:])
                return
            image = regions[0][0]
            image[1] = str(FcnxError(f"{exc} ({regions[0][1]} image)", image[0].path))
            image[2] -= 1
            return
        for (image, side, label, _), probs in zip(regions, batch):
            rows = list(probs) + ([probs.mean(axis=0)] if "ensemble" in names else [])
            if isinstance(image[1], dict):
                image[1][side] = {
                    name: [int(top_k_accuracy(row[None], [label], k)) for k in (1, min(5, len(row)))]
                    for name, row in zip(names, rows)
                }
            image[2] -= 1

    def finished(flush: bool = False) -> Iterator[tuple[ImageItem, Outcome]]:
        if pending and (flush or len(pending) >= batch_size):
            classify(pending)
            pending.clear()
        while waiting and waiting[0][2] == 0:
            item, outcome, _ = waiting.pop(0)
            yield item, outcome

    for item in items:
        if item.label not in classes:
            raise UsageError(f"label {item.label!r} is not a class of the nets", item.path)
        label = classes[item.label]
        try:
            pixels, _ = load_rgb(item.path)
            sides = [("original", pixels)]
            if box_of is not None:
                box = box_of(item, pixels)
                if box is None:
                    raise FcnxError("no box for this image (its crop failed, or crop the same split first)", item.path)
                if not _meets(box, pixels.shape[:2]):
                    raise FcnxError(
                        f"its box (x={box[0]:g}, y={box[1]:g}, w={box[2]:g}, h={box[3]:g}) lies outside the "
                        f"{pixels.shape[1]}x{pixels.shape[0]} image: a box of another version of it?",
                        item.path,
                    )
                sides.append(("cropped", cut_box(pixels, box)))
        except UsageError:
            raise
        except FcnxError as exc:
            waiting.append([item, _skip_line(exc, item), 0])
            yield from finished()
            continue
        image = [item, {}, len(sides)]
        waiting.append(image)
        pending.extend((image, side, label, squash(ensemble, region)) for side, region in sides)
        yield from finished()
    yield from finished(flush=True)


def tally(names: Sequence[str], outcomes: Iterable[Outcome], cropped: bool) -> Evaluation:
    """The :class:`Evaluation` of images' outcomes (``cropped``: crops were scored too)."""
    result = Evaluation(list(names), {n: Scores() for n in names}, {n: Scores() for n in names} if cropped else {})
    for outcome in outcomes:
        if isinstance(outcome, str):
            result.skipped.append(outcome)
            continue
        for side, hits in outcome.items():
            for name, (top1, top5) in hits.items():
                scores = (result.original if side == "original" else result.cropped)[name]
                scores.top1, scores.top5, scores.total = scores.top1 + top1, scores.top5 + top5, scores.total + 1
    return result


def evaluate(
    ensemble: Ensemble,
    items: Iterable[ImageItem],
    box_of: Callable[[ImageItem, np.ndarray], XYWH | None] | None = None,
    progress: Callable[[], None] | None = None,
    report: Callable[[str], None] | None = None,
    batch_size: int = 1,
) -> Evaluation:
    """Score every net of ``ensemble`` (and their mean, ``ensemble``) on labelled ``items``.

    ``box_of(item, pixels)`` gives the crop of an image (``None``: it has no box). An image that
    cannot be read, or has no box, or whose box cannot be made (:class:`FcnxError`), or whose
    outputs are not finite, is skipped on both sides, so originals and crops are scored on the same
    images; its one-line error is listed in ``Evaluation.skipped`` and passed to ``report``. Regions
    (originals and crops) go through the nets ``batch_size`` at a time; all are squashed to the
    kernel first, so any regions batch together and the scores are those of one region at a time.
    """
    names = classifier_names(ensemble.names)
    outcomes = []
    for _, outcome in score_items(ensemble, items, box_of, batch_size):
        if isinstance(outcome, str) and report:
            report(outcome)
        if progress:
            progress()
        outcomes.append(outcome)
    return tally(names, outcomes, box_of is not None)
