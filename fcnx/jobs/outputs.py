"""What ``fcnx crop`` writes, written so that a killed run loses nothing and duplicates nothing.

``OUTDIR`` holds the crops (same format as the originals, mirrored folders), ``boxes.jsonl`` (one
record per image and category), ``boxes.csv`` (the same, regenerated at the end of each run),
``heatmaps/`` (``--heatmaps``), ``gallery.html`` (``--gallery``), ``failures.txt`` and
``.fcnx-crop.json`` (the settings the boxes were made with).

With ``--in-place`` OUTDIR may be (or lie inside) an input folder: crops are then named
``<stem>.fcnx-crop<suffix>``, such files and ``heatmaps/`` inside OUTDIR are never inputs, and no
output is ever written at the path of an input.

Every file is written to a temporary name in its folder and renamed into place. A record is
appended to ``boxes.jsonl`` only after the image's files exist, so the journal doubles as the
resume manifest: an image is done when its records match the file's path, size and mtime (and
its files exist). On start, a line cut by a kill is dropped and superseded records are compacted.
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
import re
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from fcnx.engine.cropper import Box, CropResult
from fcnx.errors import FcnxError, UsageError
from fcnx.io.files import atomic_text, atomic_write, remove_temporaries
from fcnx.io.images import ImageItem, open_upright, to_rgb
from fcnx.io.journal import read_journal
from fcnx.jobs.maps import map_name, save_map
from fcnx.method import geometry

JOURNAL = "boxes.jsonl"
TABLE = "boxes.csv"
SETTINGS = ".fcnx-crop.json"
FAILURES = "failures.txt"
HEATMAPS = "heatmaps"
MAPS = "maps"
GALLERY = "gallery.html"
GALLERY_PAGE = 500
#: what ``--in-place`` puts before a crop's suffix; files so named inside OUTDIR are fcnx's, never inputs
IN_PLACE_MARK = ".fcnx-crop"
RESERVED = (JOURNAL, TABLE, SETTINGS, FAILURES, HEATMAPS, GALLERY)
SAVE_FORMATS = {"MPO": "JPEG"}  # formats Pillow reads but writes under another name
SAVE_OPTIONS: dict[str, dict[str, Any]] = {"JPEG": {"quality": 95}, "WEBP": {"quality": 95}}


def entries(paths: Iterable[Path]) -> list[Path]:
    """Each path with its folder resolved but not its name: the directory entry a rename into it replaces."""
    folders: dict[Path, Path] = {}
    resolved = []
    for path in paths:
        if path.parent not in folders:
            folders[path.parent] = Path(os.path.realpath(path.parent))
        resolved.append(folders[path.parent] / path.name)
    return resolved


def is_own_output(entry: Path, outdir: Path) -> bool:
    """Whether ``entry`` (see :func:`entries`) is a file ``fcnx crop --in-place`` writes in ``outdir`` (a real path):
    a marked crop or a heatmap."""
    try:
        rel = entry.relative_to(outdir)
    except ValueError:
        return False
    return rel.parts[0] == HEATMAPS or rel.name.endswith(IN_PLACE_MARK) or rel.stem.endswith(IN_PLACE_MARK)


def _safe_name(text: str) -> str:
    return re.sub(r"[^\w.-]+", "_", text).strip("._") or "category"


# --------------------------------------------------------------------------- pictures


def _colormap(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] to RGB: dark blue, purple, red, orange, yellow (perceptually ordered)."""
    anchors = np.array([[0, 0, 60], [90, 20, 140], [200, 40, 80], [250, 140, 20], [255, 240, 110]], dtype=np.float64)
    pos = np.clip(values, 0, 1) * (len(anchors) - 1)
    low = np.floor(pos).astype(int).clip(0, len(anchors) - 2)
    frac = (pos - low)[..., None]
    return (anchors[low] * (1 - frac) + anchors[low + 1] * frac).astype(np.uint8)


def _sample(heat: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``heat`` at fractional cell coordinates (clamped to the grid)."""
    h, w = heat.shape
    rows, cols = rows.clip(0, h - 1), cols.clip(0, w - 1)
    r0, c0 = np.floor(rows).astype(int), np.floor(cols).astype(int)
    r1, c1 = np.minimum(r0 + 1, h - 1), np.minimum(c0 + 1, w - 1)
    fr, fc = (rows - r0)[:, None], (cols - c0)[None, :]
    top = heat[r0][:, c0] * (1 - fc) + heat[r0][:, c1] * fc
    bottom = heat[r1][:, c0] * (1 - fc) + heat[r1][:, c1] * fc
    return top * (1 - fr) + bottom * fr


def heatmap_overlay(pixels: np.ndarray, box: Box, kernel: int, stride: int, max_side: int = 768) -> Image.Image:
    """The image with the summed ensemble heatmap at the chosen level (mean probability, 0..1) and the box.

    Each cell's value is drawn at the centre of its window and interpolated in between.
    """
    if box.heatmap is None:
        raise ValueError("the box carries no heatmap (crop with keep_heatmaps=True)")
    height, width = pixels.shape[:2]
    zoom = min(1.0, max_side / max(height, width))
    size = (max(1, round(width * zoom)), max(1, round(height * zoom)))
    base = Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR)
    sy, sx = box.scaled_size[0] / height, box.scaled_size[1] / width
    ys = (np.arange(size[1]) + 0.5) / zoom  # original-image coordinates of the display pixels
    xs = (np.arange(size[0]) + 0.5) / zoom
    heat = _sample(box.heatmap / box.nets, (ys * sy - kernel / 2) / stride, (xs * sx - kernel / 2) / stride)
    picture = Image.blend(base, Image.fromarray(_colormap(heat)), 0.55)
    draw = ImageDraw.Draw(picture)
    x1, y1, x2, y2 = (v * zoom for v in (box.x1, box.y1, box.x2, box.y2))
    draw.rectangle([x1, y1, max(x1, x2 - 1), max(y1, y2 - 1)], outline=(40, 255, 40), width=max(2, round(3 * zoom)))
    caption = f"{box.category}  votes {box.votes}/{box.nets}  p {box.mean_confidence:.2f}  scale {box.scale:.2f}"
    draw.rectangle([0, 0, size[0], 14], fill=(0, 0, 0))
    draw.text((3, 1), caption, fill=(255, 255, 255))
    return picture


# --------------------------------------------------------------------------- the output folder


class CropOutputs:
    """The output folder of one ``fcnx crop`` run: resume state, files, journal, table and gallery.

    ``settings`` are the options that change boxes; an OUTDIR made with other settings is refused.
    ``expected_boxes`` is the number of records an image gets (one per category). ``in_place`` marks
    crop names with :data:`IN_PLACE_MARK`; nothing is ever written at the path of a ``protected`` file
    (the inputs).
    """

    def __init__(
        self,
        outdir: Path,
        settings: dict[str, Any],
        *,
        net_names: Sequence[str],
        kernel: int,
        stride: int,
        expected_boxes: int,
        crops: bool = True,
        heatmaps: bool = False,
        gallery: bool = False,
        maps: bool = False,
        threads: int = 2,
        in_place: bool = False,
        protected: Iterable[Path] = (),
    ) -> None:
        self.outdir = outdir
        self.settings = settings
        self.net_names = list(net_names)
        self.kernel, self.stride = kernel, stride
        self.expected_boxes = expected_boxes
        self.crops, self.heatmaps, self.gallery = crops, heatmaps, gallery
        self.maps = maps
        self.in_place = in_place
        self._protected = set(entries(protected))
        self._groups: dict[str, list[dict[str, Any]]] = {}  # path -> its latest records
        self._superseded = False
        self._pool = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="fcnx-write")
        self._inflight: list[tuple[CropResult, Future]] = []
        self._threads = max(1, threads)

    # ---- resume state

    def open(self) -> None:
        """Clean what a killed run left, check the settings, load the journal (repairing a cut last line)."""
        remove_temporaries(self.outdir)
        settings_path = self.outdir / SETTINGS
        if settings_path.is_file():
            try:
                previous = json.loads(settings_path.read_text(encoding="utf-8")).get("settings", {})
            except (OSError, ValueError, AttributeError):
                raise UsageError(
                    f"unreadable settings file {settings_path}; remove it or choose another OUTDIR"
                ) from None
            changed = sorted(k for k in set(previous) | set(self.settings) if previous.get(k) != self.settings.get(k))
            if changed:
                raise UsageError(
                    f"{self.outdir} holds boxes made with other settings ({', '.join(changed)} differ); "
                    f"choose another OUTDIR, or run again with the same options to resume"
                )
        elif (self.outdir / JOURNAL).exists():
            raise UsageError(f"{self.outdir} has a {JOURNAL} but no {SETTINGS}; choose another OUTDIR")
        elif self.in_place and (
            taken := [
                p.name
                for p in self.outdir.iterdir()
                if p.name in RESERVED or re.fullmatch(r"gallery-\d+\.html", p.name)
            ]
        ):
            raise UsageError(
                f"{self.outdir} already holds {', '.join(sorted(taken))}, not written by fcnx crop: "
                f"--in-place would replace them; choose another OUTDIR"
            )
        else:
            atomic_text(settings_path, json.dumps({"version": 1, "settings": self.settings}, indent=2) + "\n")
        self._load_journal()

    def _load_journal(self) -> None:
        path = self.outdir / JOURNAL
        if not path.exists():
            return
        journal = read_journal(path)
        repaired = journal.unterminated  # a line cut by a kill, or a last record without its newline
        groups: dict[str, list[dict[str, Any]]] = {}
        previous: str | None = None
        for _, record in journal.lines:
            key = None if record is None else record.get("path")
            if not isinstance(key, str):
                repaired = True
                previous = None
                continue
            if key != previous:
                if key in groups:
                    repaired = True  # an earlier write for this image is superseded
                groups[key] = []
            groups[key].append(record)
            previous = key
        self._groups = groups
        if repaired:
            self._rewrite_journal()

    def _rewrite_journal(self) -> None:
        lines = [json.dumps(r, ensure_ascii=False) + "\n" for group in self._groups.values() for r in group]
        atomic_text(self.outdir / JOURNAL, "".join(lines))
        self._superseded = False

    def done(self, item: ImageItem) -> bool:
        """Whether ``item`` was fully processed with these settings and its source file has not changed."""
        group = self._groups.get(str(item.path))
        if not group or len(group) != self.expected_boxes:
            return False
        try:
            stat = item.path.stat()
        except OSError:
            return False
        if any(r.get("source_size") != stat.st_size or r.get("source_mtime_ns") != stat.st_mtime_ns for r in group):
            return False
        for record in group:
            for key, wanted in (("crop", self.crops), ("heatmap", self.heatmaps), ("map", self.maps)):
                if wanted and not (record.get(key) and (self.outdir / record[key]).is_file()):
                    return False
        return True

    @property
    def records(self) -> list[dict[str, Any]]:
        return [r for group in self._groups.values() for r in group]

    # ---- writing one image

    def crop_path(self, item: ImageItem, box: Box, boxes: int) -> PurePosixPath:
        rel, mark = item.rel, IN_PLACE_MARK if self.in_place else ""
        if boxes == 1:
            return rel.with_name(f"{rel.stem}{mark}{rel.suffix}") if mark else rel
        return rel.with_name(f"{rel.stem}.{_safe_name(box.category)}{mark}{rel.suffix}")

    def _target(self, rel: PurePosixPath, item: ImageItem) -> Path:
        """Where output ``rel`` goes; refused (never written) when that is the path of an input."""
        path = self.outdir / rel
        if entries([path])[0] in self._protected:
            raise FcnxError(f"refusing to write an output over the input {path}", item.path)
        return path

    def heatmap_path(self, item: ImageItem, box: Box, boxes: int) -> PurePosixPath:
        rel = PurePosixPath(HEATMAPS) / item.rel
        stem = rel.stem if boxes == 1 else f"{rel.stem}.{_safe_name(box.category)}"
        return rel.with_name(f"{stem}{rel.suffix.replace('.', '_')}.png")

    def _write_files(self, result: CropResult) -> list[dict[str, Any]]:
        item = result.item
        stat = item.path.stat()
        original = open_upright(item.path) if self.crops or self.heatmaps else None
        if original is not None and (original.height, original.width) != result.size:
            raise FcnxError("the file changed while it was being processed", item.path)
        records = []
        n = len(result.boxes)
        for box in result.boxes:
            record: dict[str, Any] = {
                "path": str(item.path),
                "file": item.rel.as_posix(),
                "label": item.label,
                "width": result.size[1],
                "height": result.size[0],
                **box.as_dict(),
                "crop": None,
                "heatmap": None,
                "map": None,
                "source_size": stat.st_size,
                "source_mtime_ns": stat.st_mtime_ns,
            }
            if self.crops:
                rel = self.crop_path(item, box, n)
                self._save_crop(original, box, result.size, self._target(rel, item))
                record["crop"] = rel.as_posix()
            if self.heatmaps:
                rel = self.heatmap_path(item, box, n)
                picture = heatmap_overlay(to_rgb(original), box, self.kernel, self.stride)
                atomic_write(self._target(rel, item), lambda f, p=picture: p.save(f, format="PNG", optimize=False))
                record["heatmap"] = rel.as_posix()
            if self.maps:
                rel = PurePosixPath(MAPS) / map_name(item.rel, box.category, n)
                atomic_write(self._target(rel, item), lambda f, b=box: save_map(f, b, result.size))
                record["map"] = rel.as_posix()
            records.append(record)
        return records

    @staticmethod
    def _save_crop(original: Image.Image, box: Box, size: tuple[int, int], path: Path) -> None:
        x1, y1, x2, y2 = geometry.pixel_box((box.x, box.y, box.w, box.h), size)
        crop = original.crop((x1, y1, x2, y2))
        fmt = SAVE_FORMATS.get(original.format or "", original.format or "PNG")
        options = dict(SAVE_OPTIONS.get(fmt, {}))
        for key in ("icc_profile", "exif"):
            if original.info.get(key) and fmt in ("JPEG", "PNG", "WEBP", "TIFF"):
                options[key] = original.info[key]
        if fmt == "JPEG" and crop.mode not in ("RGB", "L", "CMYK"):
            crop = crop.convert("RGB")
        buffer = io.BytesIO()
        try:
            crop.save(buffer, format=fmt, **options)
        except (KeyError, OSError, ValueError) as exc:
            raise FcnxError(f"cannot write the crop as {fmt} ({exc})", path) from None
        atomic_write(path, lambda f: f.write(buffer.getvalue()))

    def submit(self, result: CropResult) -> list[tuple[CropResult, list[dict[str, Any]] | FcnxError]]:
        """Queue ``result``'s files for writing; returns the images finished meanwhile (records, or the error)."""
        self._inflight.append((result, self._pool.submit(self._write_files, result)))
        return self._drain(limit=4 * self._threads)

    def flush(self) -> list[tuple[CropResult, list[dict[str, Any]] | FcnxError]]:
        """Wait for every queued image; returns them as :meth:`submit` does."""
        return self._drain(limit=0)

    def _drain(self, limit: int) -> list[tuple[CropResult, list[dict[str, Any]] | FcnxError]]:
        finished = []
        while self._inflight and (len(self._inflight) > limit or self._inflight[0][1].done()):
            result, future = self._inflight.pop(0)
            try:
                records = future.result()
            except FcnxError as exc:
                finished.append((result, exc))
                continue
            except OSError as exc:
                finished.append((result, FcnxError(f"cannot write outputs ({exc.strerror or exc})", result.item.path)))
                continue
            self._append(records)
            finished.append((result, records))
        return finished

    def _append(self, records: list[dict[str, Any]]) -> None:
        key = records[0]["path"]
        if key in self._groups:
            self._superseded = True
        self._groups.pop(key, None)
        self._groups[key] = records
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        with open(self.outdir / JOURNAL, "a", encoding="utf-8") as f:
            f.write(text)

    # ---- the end of a run

    def finish(
        self,
        failures: Iterable[str],
        meta_copies: Iterable[tuple[Path, PurePosixPath]] = (),
        order: Sequence[ImageItem] = (),
    ) -> None:
        """Compact the journal if needed, write the table, the gallery, the failure list and dataset meta files.

        ``order``: the run's images in input order. The journal is rewritten in that order if images
        completed in another (batches by size, a resumed run, several Ray actors), so a complete
        run's ``boxes.jsonl`` is the same whatever the engine; images of earlier runs not in
        ``order`` stay first.
        """
        self.flush()
        self._pool.shutdown(wait=True)
        if self._reorder(order) or self._superseded:
            self._rewrite_journal()
        self._write_table()
        failures = list(failures)
        failures_path = self.outdir / FAILURES
        if failures:
            atomic_text(failures_path, "".join(f"{line}\n" for line in failures))
        elif failures_path.exists():
            failures_path.unlink()
        if self.gallery:
            self._write_gallery()
        for source, rel in meta_copies:
            data = source.read_bytes()
            atomic_write(self.outdir / rel, lambda f, d=data: f.write(d))

    def _reorder(self, order: Sequence[ImageItem]) -> bool:
        """Put the records in ``order`` (see :meth:`finish`); whether that changed anything."""
        rank = {str(item.path): k for k, item in enumerate(order)}
        keys = list(self._groups)
        wanted = sorted(keys, key=lambda key: rank.get(key, -1))
        if wanted == keys:
            return False
        self._groups = {key: self._groups[key] for key in wanted}
        return True

    def _write_table(self) -> None:
        columns = [
            "file",
            "path",
            "label",
            "category",
            "category_index",
            "found",
            "votes",
            "nets",
            "confidence",
            "mean_confidence",
            "scale",
            "level",
            "cell_i",
            "cell_j",
            "x",
            "y",
            "w",
            "h",
            "x1",
            "y1",
            "x2",
            "y2",
            "crop",
            "heatmap",
        ]
        columns += [f"score:{n}" for n in self.net_names] + [f"vote:{n}" for n in self.net_names]
        columns += ["box_kind"] + [f"{kind}_{c}" for kind in ("window", "tight") for c in "xywh"] + ["map"]

        def write(f: Any) -> None:
            writer = csv.writer(f)
            writer.writerow(columns)
            for r in self.records:
                row = {**r, "cell_i": r["cell"][0], "cell_j": r["cell"][1]}
                row.update({f"score:{n}": r["net_scores"].get(n) for n in self.net_names})
                row.update({f"vote:{n}": r["net_votes"].get(n) for n in self.net_names})
                row.update({f"{k}_{c}": v for k in ("window", "tight") for c, v in zip("xywh", r.get(k) or ())})
                writer.writerow(["" if row.get(c) is None else row.get(c) for c in columns])

        atomic_write(self.outdir / TABLE, write, "w")

    def _write_gallery(self) -> None:
        records = self.records
        pages = max(1, -(-len(records) // GALLERY_PAGE))
        names = [GALLERY] + [f"gallery-{k}.html" for k in range(2, pages + 1)]
        for page, name in enumerate(names):
            chunk = records[page * GALLERY_PAGE : (page + 1) * GALLERY_PAGE]
            links = " ".join(
                f'<a href="{n}">{k + 1}</a>' if k != page else f"<b>{k + 1}</b>" for k, n in enumerate(names)
            )
            atomic_text(self.outdir / name, _gallery_page(chunk, self.outdir, links))


def _gallery_page(records: list[dict[str, Any]], outdir: Path, links: str) -> str:
    def src(path: str | Path) -> str:
        return html.escape(Path(os.path.relpath(path, outdir)).as_posix().replace("#", "%23"), quote=True)

    rows = []
    for r in records:
        left, top = 100 * r["x"] / r["width"], 100 * r["y"] / r["height"]
        w, h = 100 * r["w"] / r["width"], 100 * r["h"] / r["height"]
        shown = [
            f'<img src="{src(outdir / r[key])}" loading="lazy" alt="{key}">'
            for key in ("crop", "heatmap")
            if r.get(key)
        ]
        flag = "" if r["found"] else ' <span class="bad">not found</span>'
        rows.append(
            f'<div class="item"><div class="orig"><img src="{src(r["path"])}" loading="lazy" alt="original">'
            f'<div class="box" style="left:{left:.3f}%;top:{top:.3f}%;width:{w:.3f}%;height:{h:.3f}%"></div></div>'
            f"{''.join(shown)}<p>{html.escape(r['file'])}<br>{html.escape(r['category'])}: "
            f"{r['votes']}/{r['nets']} votes, p {r['mean_confidence']:.2f}{flag}</p></div>"
        )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>fcnx crops</title>
<style>
body {{ font-family: sans-serif; margin: 1em; }}
.item {{ display: flex; gap: 8px; align-items: flex-start; margin: 0 0 12px; border-bottom: 1px solid #ddd; padding-bottom: 8px; }}
.item img {{ max-height: 240px; max-width: 320px; }}
.orig {{ position: relative; display: inline-block; line-height: 0; }}
.orig img {{ max-height: 240px; max-width: 320px; }}
.box {{ position: absolute; border: 2px solid #2f2; box-sizing: border-box; }}
.item p {{ margin: 0; font-size: 13px; }}
.bad {{ color: #c00; font-weight: bold; }}
</style></head><body>
<p>Pages: {links}</p>
{chr(10).join(rows)}
<p>Pages: {links}</p>
</body></html>
"""
