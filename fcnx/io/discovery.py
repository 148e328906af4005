"""Finding input images: files, folders and Food-101 dataset roots, as :class:`ImageItem` (no pixels read).

A folder walk picks up :data:`IMAGE_SUFFIXES`; a Food-101 root is listed from its ``meta/*.txt``
with its paths checked (plain relative names inside ``images/``, no links to folders). Reading the
pixels is :mod:`fcnx.io.decoding`'s.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from fcnx.errors import FcnxError, UsageError, reason
from fcnx.io.decoding import max_pixels

#: suffixes (lower case) of the files a folder walk picks up; files named on the command line are always tried
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm", ".pnm"}
)
SPLITS = ("all", "train", "test")


@dataclass(frozen=True)
class ImageItem:
    """One input image: its file, where its outputs go (relative to OUTDIR), and its label if known."""

    path: Path
    rel: PurePosixPath
    label: str | None = None


def is_dataset_root(folder: Path) -> bool:
    """A Food-101-style root: ``images/<class>/<id>.jpg`` beside ``meta/classes.txt``."""
    return (folder / "images").is_dir() and (folder / "meta" / "classes.txt").is_file()


def _safe_relative(text: str, where: str) -> PurePosixPath:
    rel = PurePosixPath(text)
    if (
        not text
        or "\\" in text
        or "\0" in text
        or rel.is_absolute()
        or any(p in ("..", ".") for p in rel.parts)
        or text != rel.as_posix()
    ):
        raise UsageError(f"{where}: refusing the path {text!r}: only plain relative names inside images/ are allowed")
    return rel


def read_classes(root: Path) -> list[str]:
    """Class names of a dataset root, one per line of ``meta/classes.txt`` (a UTF-8 BOM and CRLF are fine)."""
    path = root / "meta" / "classes.txt"
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read class list ({reason(exc)})", path) from None
    classes = [line.strip() for line in lines if line.strip()]
    for number, name in enumerate(classes, 1):
        if len(_safe_relative(name, f"{path}:{number}").parts) != 1:
            raise UsageError(f"{path}:{number}: class name {name!r} must not contain '/'")
    if len(set(classes)) != len(classes):
        raise UsageError("class list has duplicate names", path)
    return classes


#: image suffixes a meta line's ``<id>`` may be completed with, in the order they are tried
LIST_SUFFIXES = (".jpg", ".jpeg", ".png", *sorted(IMAGE_SUFFIXES - {".jpg", ".jpeg", ".png"}))


@dataclass
class ImageLists:
    """What the meta lists of a Food-101-style root name (see :func:`read_image_lists`)."""

    #: each listed image once, in list order; an image with no file keeps its default path (``<id>.jpg``)
    items: list[ImageItem]
    #: path of each listed image with no file -> one line naming the meta file and line
    unresolved: dict[Path, str]
    #: one line per kind of oddity: duplicate lines, images listed in both train and test
    warnings: list[str]


def _strip_image_suffix(name: str) -> str:
    suffix = PurePosixPath(name).suffix
    return name[: -len(suffix)] if suffix.lower() in IMAGE_SUFFIXES else name


def _find_listed(folder: Path, name: str, index: dict[Path, dict[str, str]]) -> Path | None:
    """The file a meta line names in ``folder``: ``name`` itself, ``name.jpg``, then ``name`` (or its stem when it
    ends in an image suffix) with any of :data:`LIST_SUFFIXES`, compared without regard to case."""
    for candidate in (name, name + ".jpg"):
        if os.path.lexists(folder / candidate):  # a folder or a link loop is there too: the loader says what is wrong
            return folder / candidate
    if folder not in index:  # one listing per class folder, built only when a line needs it
        try:
            index[folder] = {entry.lower(): entry for entry in sorted(os.listdir(folder), reverse=True)}
        except OSError:
            index[folder] = {}
    names = index[folder]
    for stem in dict.fromkeys((name, _strip_image_suffix(name))):
        for suffix in ("", *LIST_SUFFIXES):
            found = names.get((stem + suffix).lower())
            if found is not None and (folder / found).is_file():
                return folder / found
    return None


def _read_list(meta: Path, classes: set[str]) -> list[tuple[int, PurePosixPath]]:
    """``(line number, <class>/<id>)`` of every non-empty line of a meta list; a line leaving ``images/`` is refused."""
    try:
        lines = meta.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read image list ({reason(exc)})", meta) from None
    entries = []
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text:
            continue
        rel = _safe_relative(text, f"{meta}:{number}")
        if len(rel.parts) != 2 or rel.parts[0] not in classes:
            raise UsageError(f"{meta}:{number}: expected '<class>/<id>' with a class of meta/classes.txt, got {text!r}")
        entries.append((number, rel))
    return entries


def refuse_class_links(root: Path) -> None:
    """A one-line :class:`UsageError` for a link to a folder in ``images/`` of a Food-101 root: a class folder
    is never followed through a link (it could lead out of the dataset, or loop)."""
    folder = root / "images"
    links = sorted(p for p in folder.iterdir() if p.is_symlink() and p.is_dir()) if folder.is_dir() else []
    if links:
        raise UsageError(
            f"is a link to a folder ({os.readlink(links[0])}): class folders are not followed through links; "
            f"move or copy the folder into images/",
            links[0],
        )


def read_image_lists(root: Path, split: str = "all") -> ImageLists:
    """The images ``meta/train.txt`` and/or ``meta/test.txt`` list for ``split``, each resolved to its file.

    A line ``<class>/<id>`` names ``images/<class>/<id>`` whatever the image's suffix (see
    :func:`_find_listed`). A line listed twice, or in both lists, gives one item and a warning
    with the count; the lists are compared even when ``split`` reads only one of them.
    """
    classes = set(read_classes(root))
    refuse_class_links(root)
    lists = {name: root / "meta" / f"{name}.txt" for name in ("train", "test")}
    names = [name for name in lists if lists[name].is_file()] if split == "all" else [split]
    read = {name: _read_list(path, classes) for name, path in lists.items() if name in names or path.is_file()}
    result = ImageLists([], {}, [])
    index: dict[Path, dict[str, str]] = {}
    seen: set[Path] = set()
    for name in names:
        here: set[Path] = set()
        duplicates: list[tuple[int, PurePosixPath]] = []
        for number, rel in read[name]:
            found = _find_listed(root / "images" / rel.parent, rel.name, index)
            default = rel if rel.suffix.lower() in IMAGE_SUFFIXES else rel.with_name(rel.name + ".jpg")
            path = found or root / "images" / default
            if path in here:
                duplicates.append((number, rel))
                continue
            here.add(path)
            if path in seen:  # in the train list too: counted as a leak below
                continue
            seen.add(path)
            result.items.append(ImageItem(path, PurePosixPath("images") / rel.parent / path.name, rel.parts[0]))
            if found is None:
                result.unresolved[path] = str(
                    FcnxError(
                        f"listed in meta but no such file, nor with another image suffix "
                        f"({lists[name]}:{number}: {rel.as_posix()!r})",
                        path,
                    )
                )
        if duplicates:
            number, rel = duplicates[0]
            result.warnings.append(
                f"{lists[name]}: {len(duplicates)} duplicate line(s), each image used once "
                f"(e.g. line {number}: {rel.as_posix()!r})"
            )
    if "train" in read and "test" in read:
        train = {_strip_image_suffix(rel.as_posix()) for _, rel in read["train"]}
        both = sorted({key for _, rel in read["test"] if (key := _strip_image_suffix(rel.as_posix())) in train})
        if both:
            result.warnings.append(
                f"{len(both)} image(s) listed in both meta/train.txt and meta/test.txt: test "
                f"images leak into training (e.g. {both[0]!r})"
            )
    return result


def dataset_items(root: Path, split: str = "all") -> list[ImageItem]:
    """The images of a Food-101-style root with their labels.

    Listed by ``meta/train.txt`` and ``meta/test.txt`` (lines ``<class>/<id>``, see
    :func:`read_image_lists`) when they exist, else every image under ``images/<class>/``. Lines
    that would leave ``images/`` are refused. Output paths mirror the layout: ``images/<class>/<id>.jpg``.
    """
    if split not in SPLITS:
        raise UsageError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    lists = [root / "meta" / f"{name}.txt" for name in (("train", "test") if split == "all" else (split,))]
    if any(p.is_file() for p in lists):
        return read_image_lists(root, split).items
    if split != "all":
        raise UsageError(f"no meta/{split}.txt in dataset root", root)
    refuse_class_links(root)
    items: list[ImageItem] = []
    images = root / "images"
    for path in image_files(images):
        rel = PurePosixPath(path.relative_to(root).as_posix())
        items.append(ImageItem(path, rel, rel.parts[1] if len(rel.parts) > 2 else None))
    return items


def image_files(folder: Path) -> list[Path]:
    """Files with an image suffix under ``folder``, sorted per folder (links to folders are not followed: no loops)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            if Path(name).suffix.lower() in IMAGE_SUFFIXES:
                found.append(Path(dirpath) / name)
    return found


def output_base(paths: Sequence[Path]) -> Path:
    """The folder output paths are relative to: the input itself when it is one folder, else the inputs' common parent."""
    paths = [Path(os.path.abspath(p)) for p in paths]
    if len(paths) == 1 and paths[0].is_dir():
        return paths[0]
    return Path(os.path.commonpath([p.parent for p in paths]))


def discover(inputs: Sequence[str | os.PathLike[str]], split: str = "all") -> list[ImageItem]:
    """Every image of ``inputs`` (files, folders walked recursively, dataset roots), each once, in order.

    Output paths mirror the inputs: relative to the folder when one folder is given, else to the
    common parent of all inputs. A missing input, or a bad ``FCNX_MAX_PIXELS``, is a :class:`UsageError`.
    """
    max_pixels()  # a bad budget is one error here, not one per image
    paths = [Path(os.path.abspath(p)) for p in inputs]
    for given, path in zip(inputs, paths):
        if not path.exists() and not path.is_symlink():
            raise UsageError("no such file or folder", given)
    base = output_base(paths)
    items: list[ImageItem] = []
    seen: set[Path] = set()
    for path in paths:
        if path.is_dir():
            prefix = PurePosixPath(path.relative_to(base).as_posix())
            if is_dataset_root(path):
                found = [ImageItem(i.path, prefix / i.rel, i.label) for i in dataset_items(path, split)]
            else:
                found = [ImageItem(f, PurePosixPath(f.relative_to(base).as_posix())) for f in image_files(path)]
        else:
            found = [ImageItem(path, PurePosixPath(path.relative_to(base).as_posix()))]
        for item in found:
            if item.path not in seen:
                seen.add(item.path)
                items.append(item)
    return items
