"""Heatmap overlays: the summed ensemble heatmap at the chosen level over the image, with the box.

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
    colours = colormap()(np.clip(heat, 0, 1), bytes=True)[..., :3]
    picture = Image.blend(base, Image.fromarray(np.ascontiguousarray(colours)), 0.55)
    draw = ImageDraw.Draw(picture)
    x1, y1, x2, y2 = (v * zoom for v in (box.x1, box.y1, box.x2, box.y2))
    draw.rectangle([x1, y1, max(x1, x2 - 1), max(y1, y2 - 1)], outline=(40, 255, 40), width=max(2, round(3 * zoom)))
    caption = f"{box.category}  votes {box.votes}/{box.nets}  p {box.mean_confidence:.2f}  scale {box.scale:.2f}"
    draw.rectangle([0, 0, size[0], 14], fill=(0, 0, 0))
    draw.text((3, 1), caption, fill=(255, 255, 255))
    return picture
