"""Label Studio's JSON: fcnx's boxes as tasks with ``predictions``, and reviewers' exports read back as decisions.

**Writing** (``fcnx export --format labelstudio``): :data:`TASKS` is a list of tasks that Label Studio
imports with their pre-annotations, and :data:`CONFIG` the labelling configuration they fit::

    {"data": {"image": "<--image-root>/images/pizza/1.jpg", "fcnx_path": "/data/food-101/images/pizza/1.jpg",
              "label": "pizza"},
     "predictions": [{"model_version": "fcnx 0.9.0: tiny_vgg,tiny_resnet", "score": 0.71,
                      "result": [{"id": "3f2a9c1d0b", "from_name": "box", "to_name": "image",
                                  "type": "rectanglelabels", "original_width": 640, "original_height": 480,
                                  "image_rotation": 0, "score": 0.71,
                                  "value": {"x": 12.5, "y": 10.0, "width": 50.0, "height": 62.5,
                                            "rotation": 0, "rectanglelabels": ["pizza"]}}]}]}

Boxes are in percent of the upright image (EXIF orientation applied: what a browser shows), ``id`` is
stable (a digest of the image's path and the box's category), ``score`` the ensemble's mean confidence.

**Reading** (``fcnx import-labelstudio``, ``fcnx apply --labelstudio``): Label Studio's JSON export (a
list of tasks with ``annotations``) becomes :class:`~fcnx.io.decisions.Decision` lines. An annotation's
rectangle is the reviewer's box (``accept`` with the box, in upright original pixels: percent x the run's
upright size); a rectangle label other than the image's and the run's category, or a choice of any control
but ``verdict``, relabels it; a ``verdict`` choice is ``accept`` or a reject reason (:data:`~fcnx.io.decisions.REASONS`).
Images are matched by path, never by position: ``data.fcnx_path`` (written by the export), else the
longest tail of ``data.image`` that is an image's path in the run. A task naming no image of the run,
a rotated rectangle, an image whose size in the export is not the run's upright size: listed and skipped.
"""

from __future__ import annotations

import hashlib
import json
import math
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from fcnx.errors import UsageError, one_line
from fcnx.io.decisions import REASONS, Decision, decision_problem
from fcnx.io.files import read_regular

#: the tasks file of an export
TASKS = "tasks.json"
#: the labelling configuration the tasks' predictions fit
CONFIG = "labeling-config.xml"
#: names of the configuration's controls: the image, its box, the verdict
IMAGE, BOX, VERDICT = "image", "box", "verdict"
#: a verdict choice: the crop is right, or a reject reason
VERDICTS = ("accept", *REASONS)
#: reviewer name for an annotation that names no annotator
ANONYMOUS = "labelstudio"


# --------------------------------------------------------------------------- writing


@dataclass(frozen=True)
class TaskBox:
    """One box of a task: category, ``(x, y, w, h)`` in upright pixels, the ensemble's score (if known)."""

    category: str
    box: tuple[float, float, float, float]
    score: float | None


@dataclass(frozen=True)
class TaskImage:
    """One image to review: its source file, its path in the export (relative), its upright size, label, boxes."""

    path: Path
    file: PurePosixPath
    width: int
    height: int
    label: str | None
    boxes: list[TaskBox]


def image_url(file: PurePosixPath, path: Path, root: str | None) -> str:
    """``data.image`` of a task: ``root`` joined with the image's relative path (URL-quoted), else its file path."""
    if root is None:
        return str(path)
    joiner = "" if root.endswith(("/", "=")) else "/"
    return root + joiner + quote(file.as_posix(), safe="/")


def result_id(path: Path, category: str) -> str:
    """A stable id of one box: the same image and category give the same id in every export."""
    return hashlib.sha1(f"{path}\0{category}".encode("utf-8", "surrogatepass")).hexdigest()[:10]


def task(image: TaskImage, model_version: str, image_root: str | None) -> dict[str, Any]:
    """The Label Studio task of ``image`` with its boxes as one prediction."""
    results = []
    for b in image.boxes:
        x, y, w, h = b.box
        value = {
            "x": 100.0 * x / image.width,
            "y": 100.0 * y / image.height,
            "width": 100.0 * w / image.width,
            "height": 100.0 * h / image.height,
            "rotation": 0,
            "rectanglelabels": [b.category],
        }
        result = {
            "id": result_id(image.path, b.category),
            "from_name": BOX,
            "to_name": IMAGE,
            "type": "rectanglelabels",
            "original_width": image.width,
            "original_height": image.height,
            "image_rotation": 0,
            "value": value,
        }
        results.append(result | ({} if b.score is None else {"score": b.score}))
    scores = [b.score for b in image.boxes if b.score is not None]
    prediction: dict[str, Any] = {"model_version": model_version, "result": results}
    if scores:
        prediction["score"] = sum(scores) / len(scores)
    data = {"image": image_url(image.file, image.path, image_root), "fcnx_path": str(image.path)}
    return {"data": data | ({} if image.label is None else {"label": image.label}), "predictions": [prediction]}


def config(categories: Sequence[str]) -> str:
    """The labelling configuration of the tasks: the image, rectangles labelled with ``categories``, a verdict."""
    view = ET.Element("View")
    ET.SubElement(view, "Image", name=IMAGE, value="$image", zoom="true")
    boxes = ET.SubElement(view, "RectangleLabels", name=BOX, toName=IMAGE, canRotate="false")
    for name in categories:
        ET.SubElement(boxes, "Label", value=name)
    verdict = ET.SubElement(view, "Choices", name=VERDICT, toName=IMAGE, choice="single", showInline="true")
    for name in VERDICTS:
        ET.SubElement(verdict, "Choice", value=name)
    ET.indent(view)
    return ET.tostring(view, encoding="unicode") + "\n"


def tasks_json(images: Sequence[TaskImage], model_version: str, image_root: str | None) -> str:
    """The tasks file: one task per image, in order."""
    return json.dumps([task(image, model_version, image_root) for image in images], indent=1, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class RunImage:
    """What the reader needs of an image of the run: its source path, relative path, upright size, its label
    in the dataset and the category its box was found for (a rectangle keeping that name relabels nothing)."""

    path: str
    file: str
    width: int
    height: int
    label: str | None
    category: str | None = None


@dataclass
class Imported:
    """Decisions read from an export, and one line per task or annotation skipped (why)."""

    decisions: list[Decision] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    #: tasks matched to an image of the run
    matched: int = 0


def read_export(path: Path) -> list[Any]:
    """The tasks of a Label Studio JSON export (a one-line :class:`UsageError` naming ``path`` otherwise)."""
    try:
        tasks = json.loads(read_regular(path))
    except OSError as exc:
        raise UsageError(f"cannot read the Label Studio export ({exc.strerror or exc})", path) from None
    except (ValueError, RecursionError) as exc:
        raise UsageError(f"not a Label Studio JSON export (not JSON: {one_line(exc)})", path) from None
    if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
        raise UsageError("not a Label Studio JSON export (expected a list of tasks)", path)
    return tasks


class _Skip(Exception):
    """One task or annotation that cannot be read: skipped, with why."""


def import_export(path: Path, images: Mapping[str, RunImage], fallback_at: str | None = None) -> Imported:
    """Decisions of the Label Studio export at ``path`` for the run's ``images`` (by source path).

    ``fallback_at``: the time of an annotation that gives none (default: the export file's modification time).
    """
    tasks = read_export(path)
    if fallback_at is None:
        fallback_at = datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat()
    by_file = {image.file: image for image in images.values()}
    result = Imported()
    for number, task_record in enumerate(tasks, 1):
        where = f"{path}: task {_task_name(task_record, number)}"
        try:
            image = _match(task_record.get("data"), images, by_file)
        except _Skip as why:
            result.skipped.append(one_line(f"{where}: {why}; skipped"))
            continue
        result.matched += 1
        annotations = task_record.get("annotations", task_record.get("completions", []))
        if not isinstance(annotations, list):
            result.skipped.append(one_line(f"{where}: its annotations are not a list; skipped"))
            continue
        for k, annotation in enumerate(annotations, 1):
            try:
                result.decisions += _decisions(annotation, image, fallback_at)
            except _Skip as why:
                result.skipped.append(one_line(f"{where}, annotation {k}: {why}; skipped"))
    return result


def _task_name(record: dict[str, Any], number: int) -> str:
    given = record.get("id")
    return f"{number} (id {given})" if isinstance(given, int | str) and not isinstance(given, bool) else str(number)


def _match(data: Any, images: Mapping[str, RunImage], by_file: Mapping[str, RunImage]) -> RunImage:
    """The run's image a task's ``data`` names: ``fcnx_path``, else the longest tail of ``image`` that is a run path."""
    if not isinstance(data, dict):
        raise _Skip("no data object")
    own = data.get("fcnx_path")
    if isinstance(own, str):
        if own in images:
            return images[own]
        raise _Skip(f"fcnx_path {own!r} is no image of the run")
    url = data.get("image")
    if not isinstance(url, str) or not url:
        raise _Skip("names no image (data.image)")
    parts = split_url(url)
    for k in range(len(parts)):  # the longest tail first: the whole path may be an image's source path
        tail = "/".join(parts[k:])
        image = images.get(tail) or by_file.get(tail)
        if image is not None:
            return image
    raise _Skip(f"image {url!r} is no image of the run")


def split_url(url: str) -> list[str]:
    """The path parts of an image URL or path (Label Studio's ``?d=`` local-file parameter read), unquoted."""
    parts = urlsplit(url)
    path = parts.path
    local = parse_qs(parts.query).get("d")
    if local:
        path = local[0]
    names = [unquote(p) for p in path.split("/") if p]
    return ([""] + names) if path.startswith("/") and names else names  # "" keeps an absolute path absolute


def _reviewer(annotation: dict[str, Any]) -> str:
    who = annotation.get("completed_by")
    if isinstance(who, dict):
        who = who.get("email") or who.get("id")
    if isinstance(who, bool) or who is None or who == "":
        return ANONYMOUS
    name = who if isinstance(who, str) else f"{ANONYMOUS}:{who}" if isinstance(who, int) else ANONYMOUS
    name = "".join(c for c in name if c.isprintable())[:64]
    return name or ANONYMOUS


def _time(annotation: dict[str, Any], fallback: str) -> str:
    for key in ("updated_at", "created_at"):
        text = annotation.get(key)
        if isinstance(text, str):
            try:
                moment = datetime.fromisoformat(text)
            except ValueError:
                continue
            return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC).isoformat()
    return fallback


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _Skip(f"its rectangle's {name} is not a finite number")
    return float(value)


def pixels(value: Mapping[str, Any], size: tuple[int, int]) -> tuple[float, float, float, float]:
    """A rectangle's ``x, y, width, height`` in percent as ``(x, y, w, h)`` in pixels of an image of ``size``
    ``(width, height)``, clipped to the image (rounded to 1e-6 px: percent and back is exact to the pixel)."""
    width, height = size
    x, y = _number(value.get("x"), "x") * width / 100, _number(value.get("y"), "y") * height / 100
    w, h = _number(value.get("width"), "width") * width / 100, _number(value.get("height"), "height") * height / 100
    x1, y1 = max(0.0, x), max(0.0, y)
    x2, y2 = min(float(width), x + w), min(float(height), y + h)
    if x2 <= x1 or y2 <= y1:
        raise _Skip("its rectangle lies outside the image or is empty")
    return round(x1, 6), round(y1, 6), round(x2 - x1, 6), round(y2 - y1, 6)


def _decisions(annotation: Any, image: RunImage, fallback_at: str) -> list[Decision]:
    """The decisions of one annotation on ``image``: relabel, then the box and the verdict."""
    if not isinstance(annotation, dict):
        raise _Skip("not an object")
    if annotation.get("was_cancelled") is True:
        return []
    results = annotation.get("result", [])
    if not isinstance(results, list):
        raise _Skip("its result is not a list")
    rectangles, verdict, label = [], None, None
    for result in results:
        if not isinstance(result, dict) or not isinstance(result.get("value"), dict):
            raise _Skip("a result without a value object")
        value, kind = result["value"], result.get("type")
        if kind in ("rectanglelabels", "rectangle"):
            rectangles.append(result)
        elif kind == "choices":
            choices = value.get("choices")
            if not isinstance(choices, list) or not choices or not all(isinstance(c, str) for c in choices):
                raise _Skip("a choice without names")
            if result.get("from_name") == VERDICT:
                if choices[0] not in VERDICTS:
                    raise _Skip(f"verdict {choices[0]!r} is not one of {', '.join(VERDICTS)}")
                verdict = choices[0]
            else:
                label = choices[0]
    box = None
    if rectangles:
        labelled = [r for r in rectangles if image.label in (r["value"].get("rectanglelabels") or [])]
        chosen = (labelled or rectangles)[0]
        if _number(chosen["value"].get("rotation", 0), "rotation") % 360 != 0:
            raise _Skip("its rectangle is rotated: fcnx boxes are upright")
        seen = chosen.get("original_width"), chosen.get("original_height")
        if seen != (None, None) and seen != (image.width, image.height):
            raise _Skip(
                f"Label Studio saw the image as {seen[0]}x{seen[1]}, the run as {image.width}x{image.height} "
                f"(upright, EXIF orientation applied): its box would be shifted"
            )
        box = pixels(chosen["value"], (image.width, image.height))
        names = chosen["value"].get("rectanglelabels")
        if label is None and isinstance(names, list) and names and isinstance(names[0], str):
            label = None if names[0] == image.category else names[0]
    reviewer, at = _reviewer(annotation), _time(annotation, fallback_at)
    decisions = []
    if label is not None and label != image.label:
        decisions.append(Decision(image.path, "relabel", reviewer, at, label=label))
    if verdict in REASONS:
        if box is not None:
            decisions.append(Decision(image.path, "box", reviewer, at, box=box))
        decisions.append(Decision(image.path, "reject", reviewer, at, reason=verdict))
    elif verdict == "accept" or box is not None:
        decisions.append(Decision(image.path, "accept", reviewer, at, box=box))
    for decision in decisions:
        problem = decision_problem(decision.as_dict())
        if problem is not None:
            raise _Skip(problem)
    return decisions
