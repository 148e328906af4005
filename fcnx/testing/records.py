"""Crop records (``boxes.jsonl`` lines) made up for tests and benchmarks of what reads a crop OUTDIR.

Each record is a :class:`~fcnx.io.record.CropRecord`'s JSON form, as ``fcnx crop`` writes it, with the
box, label, category, confidence and ``found`` chosen by the caller.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fcnx.io.journal import dump_line
from fcnx.io.record import CropRecord


def crop_record(
    path: str,
    file: str,
    label: str | None,
    size: tuple[int, int],
    box: tuple[float, float, float, float],
    *,
    category: str | None = None,
    found: bool = True,
    confidence: float = 0.9,
    nets: int = 3,
    heatmap: str | None = None,
) -> dict[str, Any]:
    """One record of the image at ``path`` (``size``: upright ``(width, height)``) with ``box`` ``(x, y, w, h)``."""
    x, y, w, h = box
    return CropRecord(
        path=path,
        file=file,
        label=label,
        width=size[0],
        height=size[1],
        category=category if category is not None else (label or "pizza"),
        category_index=0,
        found=found,
        votes=nets if found else 0,
        nets=nets,
        confidence=confidence * nets,
        mean_confidence=confidence,
        scale=1.0,
        level=0,
        cell=(0, 0),
        scaled_size=(size[1], size[0]),
        x=x,
        y=y,
        w=w,
        h=h,
        x1=x,
        y1=y,
        x2=x + w,
        y2=y + h,
        net_scores={f"net{k}": confidence for k in range(nets)},
        net_votes={f"net{k}": found for k in range(nets)},
        levels_examined=1,
        stopped_early=False,
        box_kind="tight",
        window=(0.0, 0.0, float(min(size)), float(min(size))),
        tight=(x, y, w, h),
        instance=1,
        crop=file,
        heatmap=heatmap,
        source_size=1000,
        source_mtime_ns=0,
    ).to_json()


def write_synthetic_journal(outdir: Path, count: int, classes: Sequence[str], seed: int = 0) -> Path:
    """``outdir/boxes.jsonl`` of ``count`` made-up images (``images/<class>/<k>.jpg`` under ``outdir``, not written),
    random labels, boxes and confidences, one in ten not found; returns its path."""
    rng = random.Random(seed)
    outdir.mkdir(parents=True, exist_ok=True)
    lines = []
    for k in range(count):
        label = classes[k % len(classes)]
        file = f"images/{label}/{k}.jpg"
        w, h = rng.randint(64, 256), rng.randint(64, 256)
        box = (float(rng.randint(0, 512 - w)), float(rng.randint(0, 384 - h)), float(w), float(h))
        found = rng.random() >= 0.1
        record = crop_record(
            str(outdir / file), file, label, (512, 384), box, found=found, confidence=round(rng.random(), 4)
        )
        lines.append(dump_line(record))
    path = outdir / "boxes.jsonl"
    path.write_bytes(b"".join(lines))
    return path
