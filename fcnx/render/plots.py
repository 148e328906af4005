"""``training.png``: loss and accuracy per epoch, drawn with Pillow (no plotting library needed)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

PANEL = (560, 400)
MARGIN = (64, 46, 24, 52)  # left, top, right, bottom
#: series per panel: (metrics.csv column, legend, colour)
PANELS: dict[str, list[tuple[str, str, tuple[int, int, int]]]] = {
    "loss": [("train_loss", "train", (31, 119, 180)), ("val_loss", "validation", (214, 39, 40))],
    "accuracy": [
        ("train_top1", "train top-1", (31, 119, 180)),
        ("val_top1", "validation top-1", (214, 39, 40)),
        ("val_top5", "validation top-5", (255, 127, 14)),
    ],
}


def _values(rows: Sequence[dict[str, Any]], key: str) -> list[float | None]:
    out: list[float | None] = []
    for row in rows:
        value = row.get(key)
        out.append(float(value) if value not in (None, "") and math.isfinite(float(value)) else None)
    return out


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    raw = (high - low) / count
    step = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    step = next(m * step for m in (1, 2, 2.5, 5, 10) if m * step >= raw)
    first = math.ceil(low / step) * step
    return [first + k * step for k in range(int((high - first) / step + 1e-9) + 1)]


def _panel(
    rows: Sequence[dict[str, Any]], title: str, series: list[tuple[str, str, tuple[int, int, int]]], font: Any
) -> Image.Image:
    image = Image.new("RGB", PANEL, "white")
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = MARGIN[0], MARGIN[1], PANEL[0] - MARGIN[2], PANEL[1] - MARGIN[3]
    data = {key: _values(rows, key) for key, _, _ in series}
    known = [v for values in data.values() for v in values if v is not None]
    if title == "accuracy":
        low, high = 0.0, 1.0
    else:
        low, high = 0.0, max(known, default=1.0) * 1.05 or 1.0
    epochs = max(len(rows), 1)

    def xy(epoch: int, value: float) -> tuple[float, float]:
        x = left + (right - left) * ((epoch - 1) / (epochs - 1) if epochs > 1 else 0.5)
        return x, bottom - (bottom - top) * (value - low) / (high - low)

    for value in _ticks(low, high):
        _, y = xy(1, value)
        draw.line([(left, y), (right, y)], fill=(235, 235, 235))
        text = f"{100 * value:.0f}%" if title == "accuracy" else f"{value:.3g}"
        draw.text((left - 6, y), text, fill="black", font=font, anchor="rm")
    for epoch in range(1, epochs + 1, max(1, math.ceil(epochs / 10))):
        x, _ = xy(epoch, low)
        draw.text((x, bottom + 6), str(epoch), fill="black", font=font, anchor="mt")
    for index in range(1, len(rows)):  # a new training step starts: dashed vertical line
        if rows[index].get("step") != rows[index - 1].get("step"):
            x = (xy(index, low)[0] + xy(index + 1, low)[0]) / 2
            for y in range(top, bottom, 8):
                draw.line([(x, y), (x, min(y + 4, bottom))], fill=(150, 150, 150))
    draw.rectangle([left, top, right, bottom], outline="black")
    draw.text(((left + right) / 2, 4), title, fill="black", font=font, anchor="mt")  # panel title
    draw.text(((left + right) / 2, PANEL[1] - 6), "epoch", fill="black", font=font, anchor="mb")
    for key, _, colour in series:
        points = [(xy(e + 1, v)) for e, v in enumerate(data[key]) if v is not None]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        for x, y in points:
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
    x = left  # legend: one row above the plot
    for _, legend, colour in series:
        draw.line([(x, top - 12), (x + 20, top - 12)], fill=colour, width=3)
        draw.text((x + 26, top - 12), legend, fill="black", font=font, anchor="lm")
        x += 26 + draw.textlength(legend, font=font) + 18
    return image


def plot_history(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Save loss (left) and accuracy (right) per epoch of ``rows`` (metrics.csv rows) as a PNG at ``path``.

    A dashed line marks where a new training step (more layers unfrozen) begins.
    """
    from fcnx.io.files import atomic_write

    font = ImageFont.load_default(size=13)
    figure = Image.new("RGB", (2 * PANEL[0], PANEL[1]), "white")
    for k, (title, series) in enumerate(PANELS.items()):
        figure.paste(_panel(rows, title, series, font), (k * PANEL[0], 0))
    path = Path(path)
    atomic_write(path, lambda f: figure.save(f, format="PNG"))
    return path
