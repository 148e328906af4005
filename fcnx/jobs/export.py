"""``fcnx export``: a crop's ``boxes.jsonl`` or a ``suspects.json`` as COCO, Pascal VOC, YOLO or FiftyOne files.

The crop records are read as ``fcnx evaluate`` reads them (box lines,
:func:`fcnx.io.journal.read_box_lines`: a last line cut by a killed run is dropped with a warning;
for the same image and category the last record counts). Each image keeps its boxes in file
order; its size is the record's ``width``/``height`` (else read from the image). A record's
``x, y, w, h`` (or a nested ``box: {x, y, w, h}``) is its box; ``"box_kind": "square"|"tight"|"fitted"``
says which kind it is, and ``window`` / ``tight`` / ``fitted`` (``[x, y, w, h]`` or ``{x, y, w, h}``) give
each kind. By default each record's own box is exported (the one its crop was cut to); ``--box square``
exports the kernel window, ``--box tight`` the tight box, falling back to the window, with one
warning, where a record has none (boxes made before ``fcnx crop --box tight``), and ``--box fitted``
the fitted box, falling back to the tight box (boxes not cropped with ``--box fitted``), else the window.

A suspects folder (``fcnx suspects -o``) exports one box per suspect image: where the nets see
their own top class, labelled with that class, with ``suspect: true`` and the dataset's label as
attributes (and as image keys in COCO, elements in VOC).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, cast

from fcnx.errors import FcnxError, UsageError
from fcnx.io import detection_formats as writers
from fcnx.io.decoding import open_upright
from fcnx.io.discovery import output_base
from fcnx.io.files import writing
from fcnx.io.journal import not_a_box, read_box_lines
from fcnx.io.record import BoxLine, read_box
from fcnx.method import geometry
from fcnx.method.boxes import RULES
from fcnx.method.geometry import XYWH

JOURNAL = "boxes.jsonl"
SUSPECTS = "suspects.json"
#: crop-record facts carried into the export as box attributes
ATTRIBUTES = ("found", "votes", "nets", "confidence")


@dataclass
class Collected:
    """What an export holds, before writing: images, their categories in order, warnings, unreadable images."""

    images: list[writers.ExportImage]
    categories: list[str]
    source: Path
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _kinds(line: BoxLine) -> dict[str, XYWH | None]:
    """The boxes by kind (every rule of :data:`~fcnx.method.boxes.RULES`) of a box line: the square window (its box
    where it gives none), the tight
    and the fitted box (``None`` if absent); its own box (``x, y, w, h``: what its crop was cut to) is its kind's."""
    record = line.line
    kind, kinds = record.get("box_kind", "square"), tuple(RULES)
    if kind not in kinds:
        raise ValueError(f"unknown box kind {kind!r}")
    given = {
        k: _given(record.get("window" if k == "square" else k)) or (line.box if kind == k else None) for k in kinds
    }
    return given | {"square": given["square"] or line.box}


def _given(value: Any) -> XYWH | None:
    """A box written as ``[x, y, w, h]`` or ``{x, y, w, h}``; ``None`` when absent."""
    return None if value is None else read_box(value)


def _size(record: dict[str, Any], path: Path) -> tuple[int, int]:
    """``(width, height)`` of the image of ``record``: its fields, else the upright image file; a size of no
    image (``0x100``) is that image's one-line :class:`FcnxError`."""
    if isinstance(record.get("width"), int) and isinstance(record.get("height"), int):
        if record["width"] < 1 or record["height"] < 1:
            raise FcnxError(f"its record gives the image size {record['width']}x{record['height']}: left out", path)
        return record["width"], record["height"]
    with open_upright(path) as image:
        return image.width, image.height


def _detection(category: str, box: XYWH, size: tuple[int, int], **facts: Any) -> writers.Detection:
    width, height = size
    score = facts.pop("score")
    corners = geometry.pixel_box(box, (height, width))
    attributes = {k: v for k, v in facts.items() if v is not None}
    return writers.Detection(category, box, corners, None if score is None else float(score), attributes)


def collect_crops(outdir: Path, box: str | None = None) -> Collected:
    """The images and boxes of the crop output ``outdir`` (its ``boxes.jsonl``): ``box`` square or tight, or
    ``None`` for each record's own box (the one its crop was cut to)."""
    kinds = tuple(RULES)  # read now: a rule registered after import counts
    if box is not None and box not in kinds:
        raise UsageError(f"unknown box {box!r}; use one of {', '.join(kinds)}")
    path = outdir / JOURNAL
    result = Collected([], [], path)
    grouped: dict[str, dict[tuple[str | None, Any], tuple[int, BoxLine]]] = {}
    for number, line in read_box_lines(path, result.warnings):
        key = (line.category, line.line.get("instance", 1))  # a line again (a resumed run): the last counts
        grouped.setdefault(line.path, {})[key] = (number, line)
    order: dict[str, int] = {}
    fallbacks: dict[str, int] = {}  # the kind exported where a record lacks the one asked for -> how often
    for image_path, records in grouped.items():
        first = next(iter(records.values()))[1]
        file = first.file if first.file is not None else os.path.basename(image_path)
        boxes = []
        for number, line in records.values():
            record = line.line
            try:
                given = _kinds(line)
                chosen = line.box
                if box is not None:
                    kind = next(k for k in kinds[kinds.index(box) :: -1] if given[k] is not None)
                    chosen = cast(XYWH, given[kind])
                    if kind != box:
                        fallbacks[kind] = fallbacks.get(kind, 0) + 1
                category = record.get("category") or record.get("label")
                if not isinstance(category, str):
                    raise ValueError("no category (nor label)")
            except (ValueError, KeyError, TypeError) as exc:
                raise not_a_box(path, number, exc) from None
            index = record.get("category_index")
            order.setdefault(category, index if isinstance(index, int) else 1 << 30)
            boxes.append((category, chosen, record))
        try:
            size = _size(first.line, Path(image_path))
        except FcnxError as exc:
            result.errors.append(str(exc))
            continue
        detections = [
            _detection(
                category, chosen, size, score=record.get("mean_confidence"), **{k: record.get(k) for k in ATTRIBUTES}
            )
            for category, chosen, record in boxes
        ]
        label = first.line.get("label") if isinstance(first.line.get("label"), str) else None
        result.images.append(writers.ExportImage(Path(image_path), PurePosixPath(file), *size, detections, label=label))
    why = {"tight": "made before fcnx crop --box tight?"}
    for kind, count in fallbacks.items():
        result.warnings.append(
            f"{path}: {count} box(es) have no {box} box ({why.get(str(box), f'not cropped with --box {box}?')}): exported their "
            + ("square window" if kind == "square" else f"{kind} box")
        )
    result.categories = sorted(order, key=lambda name: (order[name], name))
    return result


def collect_suspects(outdir: Path) -> Collected:
    """The suspect images of the ``fcnx suspects`` output ``outdir`` (its ``suspects.json``)."""
    path = outdir / SUSPECTS
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))["suspects"]
        paths = [Path(row["path"]) for row in rows]
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise UsageError(f"not a suspects file written by fcnx suspects ({type(exc).__name__}: {exc})", path) from None
    result = Collected([], [], path)
    base = output_base(paths) if paths else Path()
    for number, (row, image_path) in enumerate(zip(rows, paths), 1):
        try:
            box, category = read_box(row), str(row["other_category"])
            score, label = row.get("other_mean_confidence"), row.get("label")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UsageError(f"suspect {number}: not a suspect record ({type(exc).__name__}: {exc})", path) from None
        try:
            size = _size(row, image_path)
        except FcnxError as exc:
            result.errors.append(str(exc))
            continue
        facts = {"suspect": True, "label": label, "votes": row.get("other_votes"), "gap": row.get("gap")}
        detection = _detection(category, box, size, score=score, **facts)
        image_facts = {"suspect": True, "label": label, "seen": category}
        rel = PurePosixPath(Path(os.path.abspath(image_path)).relative_to(base).as_posix())
        result.images.append(writers.ExportImage(image_path, rel, *size, [detection], image_facts))
        if category not in result.categories:
            result.categories.append(category)
    result.categories.sort()
    return result


def collect(outdir: Path, box: str | None = None) -> Collected:
    """What ``outdir`` holds: a crop's boxes (``boxes.jsonl``), else a suspects list (``suspects.json``)."""
    if (outdir / JOURNAL).is_file():
        return collect_crops(outdir, box)
    if (outdir / SUSPECTS).is_file():
        return collect_suspects(outdir)
    raise UsageError(f"neither {JOURNAL} (fcnx crop) nor {SUSPECTS} (fcnx suspects) here", outdir)


def model_version(outdir: Path) -> str:
    """What made the boxes of ``outdir``, for Label Studio's ``model_version``: fcnx's version and the nets
    of the crop settings (``.fcnx-crop.json``) when there are some."""
    from fcnx.jobs.outdir.settings import SETTINGS
    from fcnx.version import __version__

    try:
        nets = json.loads((outdir / SETTINGS).read_text(encoding="utf-8"))["settings"]["nets"]
        names = ",".join(str(n) for n in nets) if isinstance(nets, list) else ""
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        names = ""
    return f"fcnx {__version__}" + (f": {names}" if names else "")


def export(
    outdir: Path,
    dest: Path,
    fmt: str,
    box: str | None = None,
    classes: Sequence[str] | None = None,
    report: Callable[[str], None] = print,
    image_root: str | None = None,
) -> Collected:
    """Export the boxes of ``outdir`` as ``fmt`` into ``dest``; warnings and unreadable images go to ``report``.

    ``classes`` fixes the category list and its order (ids) instead of the categories found;
    ``image_root``: where Label Studio finds the images (``labelstudio``: a path or URL prefix).
    """
    collected = collect(outdir, box)
    for line in collected.warnings:
        report(f"warning: {line}")
    for line in collected.errors:
        report(f"error: {line}")
    if classes is not None:
        unknown = [name for name in collected.categories if name not in classes]
        if unknown:
            raise UsageError(f"categories not in the class list: {', '.join(unknown[:5])}", collected.source)
        collected.categories = list(classes)
    description = model_version(outdir) if fmt == "labelstudio" else f"fcnx export of {collected.source}"
    with writing(dest):
        writers.write(fmt, collected.images, collected.categories, dest, description, image_root)
    return collected
