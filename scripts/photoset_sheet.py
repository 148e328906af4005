"""Draws the contact sheet of the box benchmark's real photos (docs/img/photoset.jpg): every photo of
fcnx.testing.photoset with its boxes, id, category, size band and split. Needs the photos installed
(scripts/get_photos.sh) and Pillow.

    python scripts/photoset_sheet.py -o docs/img/photoset.jpg
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw

from fcnx.testing.photoset import MANIFEST, load

COLUMNS, WIDTH, HEIGHT, CAPTION = 8, 200, 140, 26
SPLIT_COLOURS = {"tuning": (255, 170, 0), "eval": (255, 0, 0)}


def sheet() -> Image.Image:
    """Thumbnails in manifest order, boxes drawn in the split's colour (orange: tuning, red: eval)."""
    rows = -(-len(MANIFEST) // COLUMNS)
    canvas = Image.new("RGB", (COLUMNS * WIDTH, rows * (HEIGHT + CAPTION)), "white")
    draw = ImageDraw.Draw(canvas)
    for i, photo in enumerate(MANIFEST):
        thumb = Image.fromarray(load(photo))
        scale = min((WIDTH - 4) / thumb.width, HEIGHT / thumb.height)
        thumb = thumb.resize((round(thumb.width * scale), round(thumb.height * scale)), Image.Resampling.LANCZOS)
        left, top = (i % COLUMNS) * WIDTH + 2, (i // COLUMNS) * (HEIGHT + CAPTION)
        canvas.paste(thumb, (left, top))
        for x, y, w, h in photo.boxes:
            corners = [left + x * scale, top + y * scale, left + (x + w) * scale - 1, top + (y + h) * scale - 1]
            draw.rectangle(corners, outline=SPLIT_COLOURS[photo.split], width=2)
        caption = f"{photo.id}\n{photo.category} · {photo.band} · {photo.split}"
        draw.multiline_text((left, top + HEIGHT + 1), caption, fill="black", spacing=1)
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", type=Path, default=Path("docs/img/photoset.jpg"))
    args = parser.parse_args()
    sheet().save(args.output, quality=72, optimize=True)
    print(args.output)


if __name__ == "__main__":
    main()
