"""K folds of a training split and ``folds.json``, the file ``fcnx train --folds K`` writes (no framework here).

:func:`assign_folds` deals each class's images, shuffled by a seeded generator, to the folds in
turn, carrying on from where the previous class stopped: every class is spread evenly, and the
folds differ in size by at most one image. Fold model ``k`` trains on every image outside fold
``k``, so the images of fold ``k`` are out of its sample. ``folds.json`` records which fold each
image is in (by its path relative to the dataset root), so the split can be checked on
``--resume`` and ``fcnx suspects --folds`` scores each image with the models that did not see it.

Fields: ``k``, ``seed``, ``nets``, ``kernel``, ``config`` (the shared training settings),
``classes``, ``images`` (``{"images/<class>/<id>.jpg": fold}``, folds numbered from 1), ``folds``
(each ``fold``, ``folder``, ``checkpoints`` by net relative to the file, ``val_top1``, ``finished``)
and ``complete``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fcnx.errors import UsageError
from fcnx.io.discovery import ImageItem
from fcnx.io.files import atomic_text, read_json_file

FOLDS = "folds.json"


def assign_folds(items: Sequence[ImageItem], k: int, seed: int = 0) -> list[int]:
    """The fold (1 to ``k``) of each of ``items``: seeded, stratified by label (see the module docstring)."""
    if k < 2:
        raise UsageError(f"folds need k >= 2, got {k}")
    by_class: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        by_class.setdefault(str(item.label), []).append(index)
    rng = random.Random(f"fcnx-folds:{seed}")  # not the validation holdout's generator
    folds = [0] * len(items)
    dealt = 0
    for label in sorted(by_class):
        indices = by_class[label]
        rng.shuffle(indices)
        for index in indices:
            folds[index] = dealt % k + 1
            dealt += 1
    return folds


def fold_folder(fold: int) -> str:
    """The folder of fold model ``fold`` in a run: ``fold1``, ``fold2``, ..."""
    return f"fold{fold}"


@dataclass
class Fold:
    """One fold model: the ensemble trained without the images of fold ``fold``."""

    fold: int
    folder: str
    #: net -> its ``best.safetensors``, relative to ``folds.json``
    checkpoints: dict[str, str]
    val_top1: float | None = None
    finished: bool = False


@dataclass
class Folds:
    """What ``folds.json`` holds (see the module docstring)."""

    k: int
    seed: int
    nets: list[str]
    kernel: int
    config: dict[str, Any]
    images: dict[str, int]
    folds: list[Fold]
    classes: list[str] = field(default_factory=list)
    complete: bool = False
    version: int = 1

    def write(self, outdir: Path) -> Path:
        return atomic_text(outdir / FOLDS, json.dumps(asdict(self), indent=1) + "\n")

    def held_out(self, fold: int) -> list[str]:
        """The images fold model ``fold`` did not train on."""
        return [rel for rel, k in self.images.items() if k == fold]


def read_folds(path: Path) -> Folds:
    """The folds at ``path`` (``folds.json`` or the run folder holding it); one-line errors naming the file."""
    return read_json_file(path, FOLDS, _folds, "folds file", "a folds file of fcnx train --folds")


def _folds(data: dict[str, Any]) -> Folds:
    folds = [Fold(**f) for f in data.pop("folds")]
    result = Folds(folds=folds, **data)
    if not isinstance(result.k, int) or isinstance(result.k, bool) or result.k < 2:
        raise ValueError(f"k {result.k!r} is not a number of folds (>= 2)")
    if [f.fold for f in folds] != list(range(1, result.k + 1)):
        raise ValueError(f"lists folds {[f.fold for f in folds]}, not 1 to {result.k}")
    bad = next((rel for rel, k in result.images.items() if k not in range(1, result.k + 1)), None)
    if bad is not None:
        raise ValueError(f"image {bad!r} is in fold {result.images[bad]!r}, not one of 1 to {result.k}")
    for fold in folds:
        if Path(fold.folder).is_absolute() or ".." in Path(fold.folder).parts:
            raise ValueError(f"fold folder {fold.folder!r} leaves the run folder")
    return result


def fold_weights(path: Path) -> tuple[Folds, list[dict[str, str]]]:
    """The finished folds at ``path`` and each fold model's checkpoint files by net (absolute paths)."""
    folds = read_folds(path)
    path = path / FOLDS if path.is_dir() else path
    if not folds.complete:
        raise UsageError(f"its training has not finished: continue it with fcnx train --resume -o {path.parent}", path)
    weights = [{net: str((path.parent / file).resolve()) for net, file in f.checkpoints.items()} for f in folds.folds]
    missing = next((file for files in weights for file in files.values() if not Path(file).is_file()), None)
    if missing is not None:
        raise UsageError(f"checkpoint {missing} of a fold model is missing", path)
    return folds, weights
