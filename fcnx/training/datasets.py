"""Labelled image sets for training and evaluation: a Food-101 root or torchvision-style class folders.

Two layouts are recognised:

- **Food-101**: ``meta/classes.txt`` (class order), ``meta/train.txt`` and ``meta/test.txt`` (lines
  ``<class>/<id>``, no extension: ``.jpg``, though any image suffix is found) and ``images/<class>/<id>.jpg``.
  Listing, path checks, duplicate and train/test overlap warnings are :func:`fcnx.io.images.read_image_lists`'s;
  this module adds the consistency checks (class folders vs ``classes.txt``, empty classes) and a count
  of listed files that are missing.
- **Class folders** (torchvision's ``ImageFolder``): ``<root>/<class>/*.jpg``, classes sorted by name,
  or the same under ``<root>/train/`` and ``<root>/test/`` (or ``val/``) when the split has its own folder.

Images are read with :func:`fcnx.io.images.load_rgb` (EXIF-upright 8-bit RGB). An image that cannot be
read (corrupt, a zlib bomb, over the pixel budget, a FIFO or other special file in a class folder:
see :mod:`fcnx.io.images`) is skipped by the training loop and counted, never a crash nor a hang:
:class:`ImageDataset` returns label ``-1`` for it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from fcnx.errors import FcnxError, UsageError
from fcnx.io import images
from fcnx.io.images import IMAGE_SUFFIXES, SPLITS, ImageItem

#: label of a sample whose image could not be read (the training loop drops it and counts it)
UNREADABLE = -1
#: folders that hold a split of a class-folder dataset, by split name
SPLIT_FOLDERS = {"train": ("train",), "test": ("test", "val")}


@dataclass
class LabelledImages:
    """The images of one split of a dataset, each with its class."""

    root: Path
    layout: Literal["food101", "folders"]
    split: str
    classes: list[str]
    items: list[ImageItem]
    #: files a meta list names that are not on disk (skipped)
    missing: list[Path] = field(default_factory=list)
    #: for each of ``missing``, one line naming the meta file and line
    missing_lines: list[str] = field(default_factory=list)
    #: duplicate lines, images in both meta lists: one line each, not fatal
    warnings: list[str] = field(default_factory=list)

    def labels(self) -> list[int]:
        """Class index of every item, in ``classes`` order."""
        index = {name: k for k, name in enumerate(self.classes)}
        return [index[item.label] for item in self.items]

    def describe(self) -> str:
        """One line: layout, split, counts."""
        text = f"{self.root} ({self.layout}, {self.split}): {len(self.items)} images, {len(self.classes)} classes"
        return text + (f", {len(self.missing)} listed file(s) missing and skipped" if self.missing else "")


def open_dataset(root: str | Path, split: str = "train") -> LabelledImages:
    """The labelled images of ``split`` (``train``, ``test`` or ``all``) under ``root``, either layout.

    Raises a one-line :class:`~fcnx.errors.UsageError` naming the file for a missing ``meta`` file,
    class folders that do not match ``classes.txt``, a class without images, a meta line leaving
    ``images/`` (``../../etc``), or a folder that is neither layout.
    """
    root = Path(root)
    if split not in SPLITS:
        raise UsageError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    if not root.is_dir():
        raise UsageError("no such dataset folder", root)
    if (root / "meta").is_dir():
        return _food101(root, split)
    if (root / "images").is_dir() and not any(_has_images(p) for p in _subfolders(root) if p.name != "images"):
        raise UsageError("images/ without meta/classes.txt: a Food-101 root needs meta/classes.txt", root / "meta")
    return _folders(root, split)


# --------------------------------------------------------------------------- Food-101 layout


def _food101(root: Path, split: str) -> LabelledImages:
    classes_file = root / "meta" / "classes.txt"
    if not classes_file.is_file():
        raise UsageError("missing class list (a Food-101 root needs meta/classes.txt)", classes_file)
    lists = [root / "meta" / f"{name}.txt" for name in (("train", "test") if split == "all" else (split,))]
    if split == "all":  # every list there is, or every image under images/ when there is none
        lists = [path for path in lists if path.is_file()]
    for path in lists:
        if not path.is_file():
            raise UsageError(f"missing image list of the {path.stem} split", path)
    classes = images.read_classes(root)
    if not classes:
        raise UsageError("class list is empty", classes_file)
    folders = {p.name for p in _subfolders(root / "images")} if (root / "images").is_dir() else set()
    if not folders:
        raise UsageError(
            "no class folders: expected images/<class>/ for the classes of meta/classes.txt", root / "images"
        )
    extra, absent = sorted(folders - set(classes)), [c for c in classes if c not in folders]
    if extra or absent:
        detail = "; ".join(
            part
            for part in (
                f"images/ has folders not in the list: {_few(extra)}" if extra else "",
                f"classes without a folder in images/: {_few(absent)}" if absent else "",
            )
            if part
        )
        raise UsageError(f"class folders do not match the class list ({detail})", classes_file)
    listed = images.read_image_lists(root, split) if lists else images.ImageLists(images.dataset_items(root), {}, [])
    present = [item for item in listed.items if item.path not in listed.unresolved]
    missing = list(listed.unresolved)
    counts = {name: 0 for name in classes}
    for item in present:
        counts[item.label] += 1
    empty = [name for name, count in counts.items() if count == 0]
    if empty:
        where = " and ".join(f"meta/{p.name}" for p in lists) or "images/"
        raise UsageError(f"{len(empty)} class(es) have no image in {where} (on disk): {_few(empty)}", classes_file)
    return LabelledImages(
        root, "food101", split, classes, present, missing, list(listed.unresolved.values()), listed.warnings
    )


# --------------------------------------------------------------------------- class folders (ImageFolder)


def _folders(root: Path, split: str) -> LabelledImages:
    from torchvision.datasets.folder import find_classes, make_dataset

    nested = next((p for p in _subfolders(root) if (p / "meta").is_dir()), None)
    if nested is not None:
        raise UsageError(
            f"not a dataset root, but {nested.name}/ inside it is one (it has meta/): pass that folder", root
        )
    bases = _split_folders(root, split)
    classes: list[str] | None = None
    items: list[ImageItem] = []
    for base in bases:
        try:
            found, class_to_idx = find_classes(str(base))
        except FileNotFoundError:
            raise UsageError(
                "no class folders: expected <class>/<image> files, or a Food-101 root (images/ and meta/)", base
            ) from None
        if classes is not None and found != classes:
            raise UsageError(
                f"class folders differ from those of {bases[0].name}/ ({_few(sorted(set(found) ^ set(classes)))})", base
            )
        classes = found
        samples = make_dataset(str(base), class_to_idx, extensions=tuple(IMAGE_SUFFIXES), allow_empty=True)
        counts = {name: 0 for name in found}
        for path, label in samples:
            counts[found[label]] += 1
            rel = PurePosixPath(Path(path).relative_to(root).as_posix())
            items.append(ImageItem(Path(path), rel, found[label]))
        empty = [name for name, count in counts.items() if count == 0]
        if empty:
            raise UsageError(
                f"{len(empty)} class folder(s) hold no image ({', '.join(sorted(IMAGE_SUFFIXES))}): {_few(empty)}",
                base / empty[0],
            )
    return LabelledImages(root, "folders", split, list(classes or []), items)


def _split_folders(root: Path, split: str) -> list[Path]:
    """Where the class folders of ``split`` live: ``root/train``, ``root/test`` (or ``val``), or ``root`` itself."""
    own = {
        name: next((root / f for f in folders if (root / f).is_dir()), None) for name, folders in SPLIT_FOLDERS.items()
    }
    if own["train"] is None and own["test"] is None:
        if split == "test":
            raise UsageError(
                "class folders without split folders have no test split: use --split all, or put "
                "the folders under train/ and test/",
                root,
            )
        return [root]
    wanted = ["train", "test"] if split == "all" else [split]
    bases = [own[name] for name in wanted if own[name] is not None]
    if len(bases) != len(wanted):
        missing = [name for name in wanted if own[name] is None]
        raise UsageError(f"no {missing[0]}/ folder for the {missing[0]} split", root)
    return bases


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _has_images(folder: Path) -> bool:
    return any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.rglob("*"))


def _few(names: Sequence[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (f" (+{len(names) - n} more)" if len(names) > n else "")


# --------------------------------------------------------------------------- splitting and loading


def holdout(items: Sequence[ImageItem], fraction: float, seed: int = 0) -> tuple[list[ImageItem], list[ImageItem]]:
    """A seeded, per-class split of ``items`` into ``(train, validation)``.

    Each class keeps ``round(fraction * n)`` of its ``n`` images for validation (at least one when it
    has two or more), chosen by a generator seeded with ``seed``; both parts keep the input order.
    """
    if not 0 <= fraction < 1:
        raise UsageError(f"the validation fraction must be in [0, 1), got {fraction}")
    by_class: dict[str | None, list[int]] = {}
    for index, item in enumerate(items):
        by_class.setdefault(item.label, []).append(index)
    rng = random.Random(seed)
    held: set[int] = set()
    for label in sorted(by_class, key=str):
        indices = by_class[label]
        count = round(fraction * len(indices))
        if fraction > 0 and len(indices) >= 2:
            count = min(max(count, 1), len(indices) - 1)
        held.update(rng.sample(indices, count))
    return (
        [item for k, item in enumerate(items) if k not in held],
        [item for k, item in enumerate(items) if k in held],
    )


def train_transform(size: int, augment: bool = True, interpolation: str = "bicubic") -> Callable[[Any], Any]:
    """PIL image -> ``3 x size x size`` uint8 tensor, with timm's ImageNet training augmentation.

    Random resized crop, horizontal flip and colour jitter (``augment``); without augmentation the
    whole image is squashed to the size. Normalization is left to the training loop (on the device).
    """
    from timm.data import create_transform

    if augment:
        return create_transform(size, is_training=True, interpolation=interpolation, use_prefetcher=True)
    return create_transform(
        size, is_training=False, interpolation=interpolation, crop_pct=1.0, crop_mode="squash", use_prefetcher=True
    )


class EvalResize:
    """``3 x H x W`` uint8 tensor -> ``3 x size x size`` float pixels, exactly as ``fcnx evaluate`` and ``fcnx crop`` resize.

    The whole image is squashed to the kernel with :func:`fcnx.engine.ensemble.resize` (bicubic,
    antialiased), so validation accuracy during training is the number ``fcnx evaluate`` reports.
    (A class, not a closure: data-loading processes started by *spawn* must be able to pickle it.)
    """

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, tensor: Any) -> Any:
        from fcnx.engine.ensemble import resize

        return resize(tensor[None], (self.size, self.size))[0].contiguous()


class ImageDataset:
    """A torch map-style dataset of ``(pixels, label, index)`` for labelled ``items``.

    ``pixels`` is a float ``3 x size x size`` tensor in ``[0, 255]``. With ``train=True`` the image goes
    through :func:`train_transform`, otherwise through :class:`EvalResize`. An unreadable image gives
    zeros and label :data:`UNREADABLE`; ``index`` says which item it was. ``cut(k, pixels, full_size,
    train)``, when given, cuts item ``k``'s pixels first (``fcnx train --crops``:
    :class:`fcnx.training.transforms.BoxCutter`).
    """

    def __init__(
        self,
        items: Sequence[ImageItem],
        classes: Sequence[str],
        size: int,
        *,
        train: bool,
        augment: bool = True,
        cut: Callable[[int, Any, tuple[int, int], bool], Any] | None = None,
    ) -> None:
        index = {name: k for k, name in enumerate(classes)}
        unknown = sorted({str(item.label) for item in items if item.label not in index})
        if unknown:
            raise UsageError(f"labels not in the class list: {_few(unknown)}")
        self.items = list(items)
        self.labels = [index[item.label] for item in self.items]
        self.size = size
        self.train = train
        self._transform = train_transform(size, augment) if train else EvalResize(size)
        self.cut = cut

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int) -> tuple[Any, int, int]:
        import torch
        from PIL import Image

        item = self.items[k]
        try:
            # training may decode a large JPEG at a reduced size; validation decodes it whole, as evaluate does
            # (a crop is a part of the image: decoded whole, so that it keeps its resolution)
            pixels, full = images.load_rgb(item.path, min_side=self.size if self.train and not self.cut else None)
        except FcnxError:
            return torch.zeros(3, self.size, self.size), UNREADABLE, k
        if self.cut is not None:
            pixels = self.cut(k, pixels, full, self.train)
        if self.train:
            tensor = self._transform(Image.fromarray(pixels))
        else:
            tensor = self._transform(torch.from_numpy(pixels).permute(2, 0, 1))
        return tensor.float(), self.labels[k], k
