"""Out-of-sample scoring: each image goes to the fold model that did not train on it (``fcnx train --folds``).

:class:`HeldOutCropper` stands for a :class:`~fcnx.engine.cropper.Cropper` in the jobs that judge a
dataset's labels (:func:`fcnx.jobs.suspects.find_suspects`): it holds one cropper per fold model and
sends every image, by its file, to the cropper of the fold it was held out in.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fcnx.errors import UsageError
from fcnx.io.datasets import few
from fcnx.io.discovery import ImageItem
from fcnx.io.folds import Folds

if TYPE_CHECKING:
    from fcnx.engine.cropper import Cropper
    from fcnx.engine.results import CropFailure, CropResult


def fold_of_items(folds: Folds, items: Sequence[ImageItem], where: Path) -> list[int]:
    """The fold model (1 to ``folds.k``) that did not see each of ``items``, matched by path relative to the
    dataset root; a one-line :class:`UsageError` naming ``where`` when an image is in no held-out fold."""
    outside = [str(item.rel) for item in items if str(item.rel) not in folds.images]
    if outside:
        raise UsageError(
            f"{len(outside)} of the {len(items)} image(s) are in no held-out fold ({few(outside, 3)}): "
            f"every fold model trained on them or never saw the dataset; score the split the folds were made of "
            f"({folds.config.get('split')} of {folds.config.get('data')})",
            where,
        )
    return [folds.images[str(item.rel)] for item in items]


class HeldOutCropper:
    """One :class:`~fcnx.engine.cropper.Cropper` per fold model; each image is run by the one that did not see it."""

    def __init__(self, croppers: Sequence[Cropper], items: Sequence[ImageItem], folds: Sequence[int]) -> None:
        classes = croppers[0].classes
        if any(c.classes != classes for c in croppers):
            raise UsageError("the fold models do not share one class list")
        self.croppers = list(croppers)
        self._fold = {item.path: fold for item, fold in zip(items, folds)}

    @property
    def classes(self) -> list[str]:
        return self.croppers[0].classes

    def fold_of(self, path: str | Path) -> int:
        """The fold model (1 to k) that did not train on the image at ``path``."""
        try:
            return self._fold[Path(path)]
        except KeyError:
            raise UsageError("is in no held-out fold of the images given", Path(path)) from None

    def model_of(self, path: str | Path) -> Cropper:
        """The cropper of the fold model that did not train on the image at ``path``."""
        return self.croppers[self.fold_of(path) - 1]

    def crop_image(self, image: str | Path, *args: Any, **kwargs: Any) -> CropResult:
        return self.model_of(image).crop_image(image, *args, **kwargs)

    def label_levels(self, item: ImageItem, category: str | int) -> Any:
        return self.model_of(item.path).label_levels(item, category)

    def crop_items(self, items: Iterable[ImageItem]) -> Iterator[CropResult | CropFailure]:
        """Each fold model's images through it, fold after fold (results as they complete, as a cropper's)."""
        by_fold: dict[int, list[ImageItem]] = {}
        for item in items:
            by_fold.setdefault(self.fold_of(item.path), []).append(item)
        for fold in sorted(by_fold):
            yield from self.croppers[fold - 1].crop_items(by_fold[fold])
