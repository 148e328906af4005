"""Boxes in the formats people review and train detectors with: COCO, Pascal VOC, YOLO, FiftyOne.

Pure I/O: the writers take :class:`ExportImage` records (built by :mod:`fcnx.jobs.export` from a
crop's ``boxes.jsonl`` or a ``suspects.json``) and write them under a destination folder,
each file atomically (:mod:`fcnx.io.files`). Coordinates are upright original-image pixels.

- **COCO** (``labels.json``): ``categories`` (ids from 1), ``images`` (``file_name`` relative to the
  images' root, ``width``, ``height``), ``annotations`` (``bbox`` ``[x, y, w, h]`` exactly as in
  ``boxes.jsonl``, ``area`` ``w * h``, ``iscrowd`` 0, ``score``, and fcnx's own facts as extra keys).
- **Pascal VOC** (``Annotations/<file>.xml``): one XML per image, ``bndbox`` the integer pixel
  corners ``fcnx crop`` cuts (0-based, ``xmax``/``ymax`` exclusive), extra facts as child elements.
- **YOLO** (``labels/<file>.txt`` + ``classes.txt`` + ``images.txt``): ``class xc yc w h``, relative to
  the image size, 6 decimals.
- **FiftyOne**: the COCO file beside ``data/``, which links to every image under its ``file_name``:
  ``fo.Dataset.from_dir(DEST, dataset_type=fo.types.COCODetectionDataset)``.
- **Label Studio** (``tasks.json`` + ``labeling-config.xml``): tasks with the boxes as ``predictions``, in
  percent of the upright image (:mod:`fcnx.io.labelstudio`).
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from fcnx.errors import UsageError
from fcnx.io import labelstudio
from fcnx.io.files import atomic_text, check_folder_path

FORMATS = ("coco", "voc", "yolo", "fiftyone", "labelstudio")
COCO_FILE = "labels.json"
#: the record of what an export wrote, so that exporting again replaces exactly those files
MARKER = ".fcnx-export.json"


@dataclass(frozen=True)
class Detection:
    """One box of one image: ``box`` is ``(x, y, w, h)`` in pixels, ``corners`` its integer pixel corners."""

    category: str
    box: tuple[float, float, float, float]
    corners: tuple[int, int, int, int]
    #: the ensemble's mean confidence (``None``: not known, e.g. a hand-written boxes file)
    score: float | None
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ExportImage:
    """One image: its file, its name in the export (a relative POSIX path), its upright size and boxes."""

    path: Path
    file: PurePosixPath
    width: int
    height: int
    detections: list[Detection]
    #: facts about the image (a suspect's label and what the nets see), as COCO image keys / VOC elements
    attributes: dict[str, Any] = field(default_factory=dict)
    #: the image's label in its dataset (Label Studio tasks carry it), ``None`` if unknown
    label: str | None = None


def coco_document(images: Sequence[ExportImage], categories: Sequence[str], description: str) -> dict[str, Any]:
    """The COCO detection document of ``images``; category ids are ``categories``' positions from 1."""
    ids = {name: k for k, name in enumerate(categories, 1)}
    document: dict[str, Any] = {
        "info": {"description": description},
        "categories": [{"id": ids[name], "name": name, "supercategory": ""} for name in categories],
        "images": [],
        "annotations": [],
    }
    for image_id, image in enumerate(images, 1):
        document["images"].append(
            {
                "id": image_id,
                "file_name": image.file.as_posix(),
                "width": image.width,
                "height": image.height,
                **image.attributes,
            }
        )
        for det in image.detections:
            x, y, w, h = det.box
            document["annotations"].append(
                {
                    "id": len(document["annotations"]) + 1,
                    "image_id": image_id,
                    "category_id": ids[det.category],
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                    **({} if det.score is None else {"score": det.score}),
                    **det.attributes,
                }
            )
    return document


def _voc_xml(image: ExportImage) -> str:
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = image.file.parent.as_posix()
    ET.SubElement(root, "filename").text = image.file.name
    ET.SubElement(root, "path").text = str(image.path)
    ET.SubElement(ET.SubElement(root, "source"), "database").text = "fcnx"
    size = ET.SubElement(root, "size")
    for key, value in (("width", image.width), ("height", image.height), ("depth", 3)):
        ET.SubElement(size, key).text = str(value)
    ET.SubElement(root, "segmented").text = "0"
    for key, value in image.attributes.items():
        ET.SubElement(root, key).text = _text(value)
    for det in image.detections:
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = det.category
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = "0"
        ET.SubElement(obj, "difficult").text = "0"
        if det.score is not None:
            ET.SubElement(obj, "score").text = repr(det.score)
        for key, value in det.attributes.items():
            ET.SubElement(obj, key).text = _text(value)
        bndbox = ET.SubElement(obj, "bndbox")
        for key, value in zip(("xmin", "ymin", "xmax", "ymax"), det.corners):
            ET.SubElement(bndbox, key).text = str(value)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _yolo_lines(image: ExportImage, index: dict[str, int]) -> str:
    lines = []
    for det in image.detections:
        x, y, w, h = det.box
        cx, cy = (x + w / 2) / image.width, (y + h / 2) / image.height
        lines.append(f"{index[det.category]} {cx:.6f} {cy:.6f} {w / image.width:.6f} {h / image.height:.6f}\n")
    return "".join(lines)


def _check_names(images: Sequence[ExportImage]) -> None:
    seen: dict[PurePosixPath, Path] = {}
    for image in images:
        if not _inside(image.file):
            raise UsageError(f"image name {image.file} leaves the export folder", image.path)
        if "\0" in str(image.file):
            raise UsageError(f"image name {image.file} holds a NUL byte, which no file name can", image.path)
        other = seen.setdefault(image.file, image.path)
        if other != image.path:
            raise UsageError(f"two images export under the same name {image.file} ({other} and {image.path})")


def write(
    fmt: str,
    images: Sequence[ExportImage],
    categories: Sequence[str],
    dest: Path,
    description: str,
    image_root: str | None = None,
) -> list[Path]:
    """Write ``images`` as ``fmt`` (one of :data:`FORMATS`) under ``dest``; returns the files written.

    ``dest`` must be empty, new, or a previous export (it holds :data:`MARKER`): that export's files
    are replaced, nothing else there is touched. ``description`` names the source (Label Studio's
    ``model_version``); ``image_root``: the path or URL Label Studio finds the images under.
    """
    if fmt not in FORMATS:
        raise UsageError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    _check_names(images)
    previous = _previous_files(dest)
    written: list[Path] = []

    def put(rel: str, text: str) -> None:
        written.append(atomic_text(dest / rel, text))

    if fmt in ("coco", "fiftyone"):
        put(COCO_FILE, json.dumps(coco_document(images, categories, description), indent=1) + "\n")
    if fmt == "fiftyone":
        for image in images:
            link = dest / "data" / image.file
            link.parent.mkdir(parents=True, exist_ok=True)
            if link.is_symlink():
                link.unlink()
            os.symlink(os.path.realpath(image.path), link)
            written.append(link)
    if fmt == "voc":
        for image in images:
            put(f"Annotations/{image.file.with_suffix('.xml').as_posix()}", _voc_xml(image))
    if fmt == "yolo":
        index = {name: k for k, name in enumerate(categories)}
        put("classes.txt", "".join(f"{name}\n" for name in categories))
        put("images.txt", "".join(f"{os.path.realpath(image.path)}\n" for image in images))
        for image in images:
            put(f"labels/{image.file.with_suffix('.txt').as_posix()}", _yolo_lines(image, index))
    if fmt == "labelstudio":
        tasks = [_task_image(image) for image in images]
        put(labelstudio.TASKS, labelstudio.tasks_json(tasks, description, image_root))
        put(labelstudio.CONFIG, labelstudio.config(categories))
    for stale in sorted(previous - {p.relative_to(dest).as_posix() for p in written}):
        path = dest / stale
        if path.is_file() or path.is_symlink():
            path.unlink()
            for folder in path.relative_to(dest).parents[:-1]:  # folders it leaves empty, deepest first
                if any((dest / folder).iterdir()):
                    break
                (dest / folder).rmdir()
    rel = sorted(p.relative_to(dest).as_posix() for p in written)
    atomic_text(dest / MARKER, json.dumps({"format": fmt, "files": rel}, indent=1) + "\n")
    return written


def _task_image(image: ExportImage) -> labelstudio.TaskImage:
    label = image.label if image.label is not None else image.attributes.get("label")
    boxes = [labelstudio.TaskBox(det.category, det.box, det.score) for det in image.detections]
    return labelstudio.TaskImage(image.path, image.file, image.width, image.height, label, boxes)


def _previous_files(dest: Path) -> set[str]:
    """The files of the export already in ``dest`` (none when new or empty); refuses a folder of other files,
    and a destination that is not a folder (:func:`~fcnx.io.files.check_folder_path`)."""
    check_folder_path(dest)
    if not dest.exists():
        return set()
    marker = dest / MARKER
    if not marker.is_file():
        if any(dest.iterdir()):
            raise UsageError("the export destination holds other files; choose a new or empty folder", dest)
        return set()
    try:
        files = json.loads(marker.read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        raise UsageError(f"unreadable {MARKER}; remove it or choose another folder", dest) from None
    return {f for f in files if isinstance(f, str) and _inside(PurePosixPath(f))}


def _inside(rel: PurePosixPath) -> bool:
    return not rel.is_absolute() and ".." not in rel.parts
