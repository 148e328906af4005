"""Heatmap overlays: where the ensemble looked (its evidence, scaled to its range) over the image, with every box.

Colours come from matplotlib's perceptually uniform ``inferno`` colormap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw

if TYPE_CHECKING:
    from fcnx.engine.results import Box

COLORMAP = "inferno"


def colormap() -> Any:
    """matplotlib's :data:`COLORMAP`."""
    from matplotlib import colormaps

    return colormaps[COLORMAP]


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


#: the boxes an overlay draws: the record's field, its colour and line width (the box cropped is drawn last, thick)
KINDS = (("window", (255, 160, 0)), ("tight", (0, 200, 255)), ("fitted", (255, 0, 200)))
CROPPED = (40, 255, 40)


def _evidence(box: Box, size: tuple[int, int], zoom: float, kernel: int, stride: int) -> np.ndarray:
    """The map drawn, at the display ``size`` ``(width, height)``, scaled to [0, 1] (its minimum 0, its peak 1):
    the found object's evidence where the box carries it, else the summed heatmap at the chosen level."""
    if box.evidence is not None:
        from fcnx.method.evidence import resize_map

        heat = resize_map(box.evidence, (size[1], size[0]))
    else:
        assert box.heatmap is not None
        height, width = size[1] / zoom, size[0] / zoom
        sy, sx = box.scaled_size[0] / height, box.scaled_size[1] / width
        ys = (np.arange(size[1]) + 0.5) / zoom  # original-image coordinates of the display pixels
        xs = (np.arange(size[0]) + 0.5) / zoom
        heat = _sample(box.heatmap, (ys * sy - kernel / 2) / stride, (xs * sx - kernel / 2) / stride)
    low, high = float(heat.min()), float(heat.max())
    return (heat - low) / (high - low) if high > low else np.zeros_like(heat)


def heatmap_overlay(pixels: np.ndarray, box: Box, kernel: int, stride: int, max_side: int = 768) -> Image.Image:
    """The image under where the ensemble looked, and every box it gave.

    The map (the found object's evidence, else the summed heatmap at the chosen level: each cell's value at
    the centre of its window, interpolated in between) is scaled from its minimum to its peak and coloured
    with :data:`COLORMAP`, opaque where it is strong and faint where it is weak, so the evidence stands out;
    on it the paper's window (orange), the tight box (cyan), the fitted box (magenta, when there is one) and
    the box cropped (green, thick).
    """
    if box.heatmap is None and box.evidence is None:
        raise ValueError("the box carries no heatmap (crop with keep_heatmaps=True)")
    height, width = pixels.shape[:2]
    zoom = min(1.0, max_side / max(height, width))
    size = (max(1, round(width * zoom)), max(1, round(height * zoom)))
    base = np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR), dtype=np.float64)
    heat = _evidence(box, size, zoom, kernel, stride)
    colours = colormap()(heat, bytes=True)[..., :3].astype(np.float64)
    alpha = (0.15 + 0.65 * heat)[..., None]
    picture = Image.fromarray(np.round(base * (1 - alpha) + colours * alpha).astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    line = max(1, round(2 * zoom))
    for field, colour in KINDS:
        shown = getattr(box, field)
        if shown is not None and shown[2] > 0 and shown[3] > 0:
            x, y, w, h = (v * zoom for v in shown)
            draw.rectangle([x, y, max(x, x + w - 1), max(y, y + h - 1)], outline=colour, width=line)
    x1, y1, x2, y2 = (v * zoom for v in (box.x1, box.y1, box.x2, box.y2))
    draw.rectangle([x1, y1, max(x1, x2 - 1), max(y1, y2 - 1)], outline=CROPPED, width=max(2, round(3 * zoom)))
    caption = (
        f"{box.category}  votes {box.votes}/{box.nets}  p {box.mean_confidence:.2f}  scale {box.scale:.2f}  "
        f"cropped: {box.kind} (green); window orange, tight cyan, fitted magenta"
    )
    draw.rectangle([0, 0, size[0], 14], fill=(0, 0, 0))
    draw.text((3, 1), caption, fill=(255, 255, 255))
    return picture
