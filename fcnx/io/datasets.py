"""Labelled image sets on disk: a Food-101 root or torchvision-style class folders (listing only, no torch).

Two layouts are recognised:

- **Food-101**: ``meta/classes.txt`` (class order), ``meta/train.txt`` and ``meta/test.txt`` (lines
  ``<class>/<id>``, no extension: ``.jpg``, though any image suffix is found) and ``images/<class>/<id>.jpg``.
  Listing, path checks, duplicate and train/test overlap warnings are :func:`fcnx.io.discovery.read_image_lists`'s;
  this module adds the consistency checks (class folders vs ``classes.txt``, empty classes) and a count
  of listed files that are missing.
- **Class folders** (torchvision's ``ImageFolder``): ``<root>/<class>/*.jpg``, classes sorted by name,
  or the same under ``<root>/train/`` and ``<root>/test/`` (or ``val/``) when the split has its own folder.

The pixels are read later, by whoever uses the items (:mod:`fcnx.training.datasets` for training).
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

from fcnx.errors import UsageError
from fcnx.io import decoding, discovery
from fcnx.io.discovery import IMAGE_SUFFIXES, SPLITS, ImageItem

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
        return [index[str(item.label)] for item in self.items]

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
    decoding.max_pixels()  # a bad FCNX_MAX_PIXELS is one error here, not one per image
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
    classes = discovery.read_classes(root)
    if not classes:
        raise UsageError("class list is empty", classes_file)
    discovery.refuse_class_links(root)
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
                f"images/ has folders not in the list: {few(extra)}" if extra else "",
                f"classes without a folder in images/: {few(absent)}" if absent else "",
            )
            if part
        )
        raise UsageError(f"class folders do not match the class list ({detail})", classes_file)
    listed = (
        discovery.read_image_lists(root, split)
        if lists
        else discovery.ImageLists(discovery.dataset_items(root), {}, [])
    )
    present = [item for item in listed.items if item.path not in listed.unresolved]
    missing = list(listed.unresolved)
    counts = {name: 0 for name in classes}
    for item in present:
        counts[str(item.label)] += 1
    empty = [name for name, count in counts.items() if count == 0]
    if empty:
        where = " and ".join(f"meta/{p.name}" for p in lists) or "images/"
        raise UsageError(f"{len(empty)} class(es) have no image in {where} (on disk): {few(empty)}", classes_file)
    return LabelledImages(
        root, "food101", split, classes, present, missing, list(listed.unresolved.values()), listed.warnings
    )


# --------------------------------------------------------------------------- class folders (ImageFolder)


def _folders(root: Path, split: str) -> LabelledImages:
    nested = next((p for p in _subfolders(root) if (p / "meta").is_dir()), None)
    if nested is not None:
        raise UsageError(
            f"not a dataset root, but {nested.name}/ inside it is one (it has meta/): pass that folder", root
        )
    bases = _split_folders(root, split)
    classes: list[str] | None = None
    items: list[ImageItem] = []
    warnings = [_link_warning(base, links) for base in bases if (links := _folder_links(base))]
    for base in bases:
        found = [p.name for p in _subfolders(base)]
        if not found:
            raise UsageError(
                "no class folders: expected <class>/<image> files, or a Food-101 root (images/ and meta/)", base
            )
        if classes is not None and found != classes:
            raise UsageError(
                f"class folders differ from those of {bases[0].name}/ ({few(sorted(set(found) ^ set(classes)))})", base
            )
        classes = found
        counts = {name: 0 for name in found}
        for name in found:
            for path in discovery.image_files(base / name):
                counts[name] += 1
                items.append(ImageItem(path, PurePosixPath(path.relative_to(root).as_posix()), name))
        empty = [name for name, count in counts.items() if count == 0]
        if empty:
            raise UsageError(
                f"{len(empty)} class folder(s) hold no image ({', '.join(sorted(IMAGE_SUFFIXES))}): {few(empty)}",
                base / empty[0],
            )
    return LabelledImages(root, "folders", split, list(classes or []), items, warnings=warnings)


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
    bases = [base for base in (own[name] for name in wanted) if base is not None]
    if len(bases) != len(wanted):
        missing = [name for name in wanted if own[name] is None]
        raise UsageError(f"no {missing[0]}/ folder for the {missing[0]} split", root)
    return bases


def _subfolders(folder: Path) -> list[Path]:
    """The folders in ``folder``: neither hidden nor links (a link could lead out of the dataset, or loop)."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith("."))


def _folder_links(folder: Path) -> list[Path]:
    """The links to folders in ``folder`` (not hidden): not class folders, never followed."""
    return sorted(p for p in folder.iterdir() if p.is_symlink() and p.is_dir() and not p.name.startswith("."))


def _link_warning(folder: Path, links: Sequence[Path]) -> str:
    return f"{folder}: {len(links)} link(s) to folders skipped, not class folders (links are not followed): " + few(
        [f"{p.name} -> {os.readlink(p)}" for p in links]
    )


def _has_images(folder: Path) -> bool:
    return any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.rglob("*"))


def few(names: Sequence[str], n: int = 5) -> str:
    """The first ``n`` names, and how many more."""
    return ", ".join(names[:n]) + (f" (+{len(names) - n} more)" if len(names) > n else "")


# --------------------------------------------------------------------------- splitting


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
