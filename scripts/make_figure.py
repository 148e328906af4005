"""Make docs/img/crops.jpg with fcnx itself: real photos, their heatmap with the box, and the crop.

python scripts/make_figure.py      (needs scikit-image; runs `fcnx crop --heatmaps` offline)
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

from fcnx.testing.photos import PHOTOS

ROOT = Path(__file__).resolve().parents[1]
CASES = [
    ("coffee", "espresso"),
    ("astronaut_helmet", "football helmet"),
    ("astronaut_shuttle", "space shuttle"),
    ("motorcycle", "moped"),
]
ROW_HEIGHT = 240


def _fit(image: Image.Image, height: int = ROW_HEIGHT) -> Image.Image:
    return image.resize((max(1, round(image.width * height / image.height)), height), Image.LANCZOS)


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, category in CASES:
            src = Path(tmp) / "in" / f"{name}.png"
            src.parent.mkdir(exist_ok=True)
            Image.fromarray(PHOTOS[name].load()).save(src)
            out = Path(tmp) / f"out-{name}"
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "fcnx",
                    "crop",
                    "-q",
                    "--heatmaps",
                    "--category",
                    category,
                    str(src),
                    "-o",
                    str(out),
                ],
                check=True,
            )
            record = json.loads((out / "boxes.jsonl").read_text().splitlines()[0])
            original = Image.open(src).convert("RGB")
            draw = ImageDraw.Draw(original)
            draw.rectangle([record["x1"], record["y1"], record["x2"], record["y2"]], outline=(40, 255, 40), width=4)
            panels = [
                _fit(original),
                _fit(Image.open(out / record["heatmap"]).convert("RGB")),
                _fit(Image.open(out / record["crop"]).convert("RGB")),
            ]
            rows.append(panels)
    width = max(sum(p.width for p in row) + 10 * (len(row) - 1) for row in rows)
    figure = Image.new("RGB", (width, len(rows) * (ROW_HEIGHT + 10) - 10), "white")
    for r, row in enumerate(rows):
        x = 0
        for panel in row:
            figure.paste(panel, (x, r * (ROW_HEIGHT + 10)))
            x += panel.width + 10
    target = ROOT / "docs" / "img" / "crops.jpg"
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.save(target, quality=85, optimize=True)
    print(f"wrote {target} ({target.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
