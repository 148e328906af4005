"""A small crop OUTDIR to review: three real images (one turned by its EXIF orientation), their records,
a heatmap, the dataset's class list, and one record of the second image for another category."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from fcnx.io.journal import dump_line
from fcnx.testing.records import crop_record

CLASSES = ["pizza", "sushi", "lasagna", "pho"]
#: (file, label, stored size, EXIF orientation, upright size, box, found, confidence)
IMAGES = [
    ("images/pizza/1.jpg", "pizza", (1200, 900), 1, (1200, 900), (300.0, 150.0, 600.0, 450.0), True, 0.8),
    ("images/pizza/2.jpg", "pizza", (360, 240), 1, (360, 240), (20.0, 30.0, 120.0, 100.0), False, 0.1),
    ("images/sushi/3.jpg", "sushi", (600, 960), 6, (960, 600), (120.0, 60.0, 480.0, 360.0), True, 0.6),
]


def make_outdir(root: Path) -> Path:
    """``root/data`` (the images) and ``root/out`` (the crop OUTDIR); returns the OUTDIR."""
    out = root / "out"
    (out / "meta").mkdir(parents=True)
    (out / "meta" / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    (out / "heatmaps").mkdir()
    Image.new("RGB", (1200, 900), (200, 0, 0)).save(out / "heatmaps" / "1.png")
    lines = []
    for k, (file, label, stored, orientation, upright, box, found, confidence) in enumerate(IMAGES):
        path = root / "data" / file
        path.parent.mkdir(parents=True, exist_ok=True)
        image = Image.new("RGB", stored, (30 + 60 * k, 120, 200 - 50 * k))
        exif = Image.Exif()
        exif[0x0112] = orientation
        image.save(path, exif=exif.tobytes())
        heatmap = "heatmaps/1.png" if k == 0 else None
        lines.append(
            dump_line(
                crop_record(str(path), file, label, upright, box, found=found, confidence=confidence, heatmap=heatmap)
            )
        )
        if k == 1:
            other = crop_record(
                str(path), file, label, upright, (0.0, 0.0, 90.0, 90.0), category="lasagna", confidence=0.7
            )
            lines.append(dump_line(other))
    (out / "boxes.jsonl").write_bytes(b"".join(lines))
    return out


@pytest.fixture
def outdir(tmp_path: Path) -> Path:
    return make_outdir(tmp_path)


@pytest.fixture
def outdir_in():
    """:func:`make_outdir`, for a test that chooses where."""
    return make_outdir
