"""The ensemble's evidence spread back onto the image, and the tight box it gives.

Pure numpy (and ``scipy.ndimage`` to resize maps). A pyramid level scores one window of
``kernel`` pixels (in the scaled image) per heatmap cell; seen on the original image, cell
``(i, j)`` covers rows ``[stride * i / sy, (stride * i + kernel) / sy)`` and the columns alike
(``sy``, ``sx``: the level's exact per-axis scale, as :func:`fcnx.method.geometry.cell_to_box`).
The last window of each axis is stretched to the image's border, so every pixel lies in at least
one window of every level.

- :func:`level_map`: one level's cell values as a map of the image's size: each pixel gets the
  mean value of the windows that cover it.
- :func:`evidence_map`: the mean of the level maps (optionally weighted), in the values' range.
- :func:`agreed_window`: the chosen window refined by the strong windows of every level that
  overlap it: each edge a weighted quantile of theirs, just inside their median (the tight box).
- :func:`object_map`: the evidence of the found object as a [0, 1] score map (``--heatmaps npy``).
- :func:`class_evidence`: the nets' class maps (:class:`ClassMap`, the head on each feature cell:
  class activation maps for linear heads) of several levels on the image, each scaled to [0, 1], averaged
  with each map weighted by its number of cells.
- :func:`region_box`: the bounding box of the region above a share of a map's peak that overlaps a seed box most.
- :func:`share_inside`: the share of a box's area that lies inside another.
- :func:`tight`: the method of ``fcnx crop --box tight``: the region of the class maps' evidence over
  the chosen level and the finer ones that overlaps the chosen window, where it agrees with the agreed
  window or lies inside it; else (no class maps: nets whose head has no per-cell form; or a region elsewhere) the agreed
  window, and inside it the evidence of those levels as the object map (docs/crop.md). Its parameters
  were chosen on benchmark canvases and pasted real photos of a seed that is not reported (docs/crop.md).

Boxes are ``(x, y, w, h)`` in pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from fcnx.method import geometry, metrics
from fcnx.method.selection import Choice

#: the chosen window's peers score at least this share of the best of them ...
SHARE = 0.7
#: ... and overlap the chosen one by at least this IoU; they weigh their value to this power
OVERLAP = 0.3
POWER = 4.0
#: the tight box's left and top edges are this weighted quantile of the strong windows', its right and bottom edges 1 - this
QUANTILE = 0.6

#: the tight box from class maps: the region of their evidence at or above this share of its peak ...
THRESHOLD = 0.45
#: ... when it overlaps the windows' agreed box by at least this IoU, or lies in it: at least this share of
#: its area inside (a narrow object in a wide agreed box); else the nets' class maps are not trusted: the
#: agreed box it is
AGREE = 0.4
INSIDE = 0.9

#: the class maps of the chosen level and of the finer ones up to this factor of its scale give the region
#: (the default pyramid's whole span; with ``--max-scale auto``, the finest levels see parts of a large object)
MAP_SPAN = 3.0

#: the long side (pixels) the evidence of a larger image is computed at; boxes are scaled back
MAX_SIDE = 512

Box = tuple[float, float, float, float]


def coverage(cells: int, image_side: int, scaled_side: int, kernel: int, stride: int) -> np.ndarray:
    """Which of ``cells`` windows along one axis cover each of ``image_side`` pixels (``image_side x cells``, bool).

    Pixel ``p`` (centre ``p + 0.5``) lies in window ``i`` when ``stride * i / s <= p + 0.5 < (stride * i + kernel) / s``
    with ``s = scaled_side / image_side``; the last window reaches the border.
    """
    if cells < 1:
        raise ValueError(f"a level needs at least one cell, got {cells}")
    s = scaled_side / image_side
    starts = stride * np.arange(cells) / s
    stops = (stride * np.arange(cells) + kernel) / s
    stops[-1] = max(stops[-1], image_side)
    centres = np.arange(image_side)[:, None] + 0.5
    return (starts[None] <= centres) & (centres < stops[None])


def level_map(
    values: np.ndarray, size: tuple[int, int], scaled: tuple[int, int], kernel: int, stride: int
) -> np.ndarray:
    """One level's cell ``values`` (``h x w``) at the image's ``size``: per pixel, the mean over the windows covering it."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"expected cell values h x w, got shape {values.shape}")
    rows = coverage(values.shape[0], size[0], scaled[0], kernel, stride).astype(np.float64)
    cols = coverage(values.shape[1], size[1], scaled[1], kernel, stride).astype(np.float64)
    total = rows @ values @ cols.T
    count = rows.sum(axis=1)[:, None] * cols.sum(axis=1)[None]
    return total / count


def evidence_map(
    levels: Sequence[np.ndarray],
    scaled_sizes: Sequence[tuple[int, int]],
    size: tuple[int, int],
    kernel: int,
    stride: int,
    weights: Sequence[float] | None = None,
) -> np.ndarray:
    """The (weighted) mean over levels of their :func:`level_map` s: ``height x width`` float64."""
    if not levels or len(levels) != len(scaled_sizes):
        raise ValueError(f"need one scaled size per level, got {len(levels)} levels and {len(scaled_sizes)} sizes")
    w = np.ones(len(levels)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(levels),) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError("level weights must be one non-negative number per level, not all zero")
    total = np.zeros(size, dtype=np.float64)
    for values, scaled, weight in zip(levels, scaled_sizes, w):
        if weight:
            total += weight * level_map(values, size, scaled, kernel, stride)
    return total / w.sum()


def windows(
    cells: tuple[int, int], size: tuple[int, int], scaled: tuple[int, int], kernel: int, stride: int
) -> np.ndarray:
    """Every cell's window ``(x, y, w, h)`` on the image (``h * w x 4``, row-major), as :func:`~fcnx.method.geometry.cell_to_box`."""
    (height, width), (sy, sx) = size, (scaled[0] / size[0], scaled[1] / size[1])
    rows, cols = stride * np.arange(cells[0]), stride * np.arange(cells[1])
    y0, y1 = rows / sy, np.minimum((rows + kernel) / sy, height)
    x0, x1 = cols / sx, np.minimum((cols + kernel) / sx, width)
    top, left = np.meshgrid(y0, x0, indexing="ij")
    bottom, right = np.meshgrid(y1, x1, indexing="ij")
    return np.stack([left, top, right - left, bottom - top], axis=-1).reshape(-1, 4)


def _strong_windows(
    levels: Sequence[np.ndarray],
    scaled_sizes: Sequence[tuple[int, int]],
    size: tuple[int, int],
    kernel: int,
    stride: int,
    chosen: Box,
    share: float,
    overlap: float,
    power: float,
) -> tuple[np.ndarray, np.ndarray] | None:
    """The corners ``(x0, y0, x1, y1)`` of every window of every level that scores at least ``share`` x the
    best value and overlaps ``chosen`` by IoU >= ``overlap``, and their weights value ** ``power``;
    ``None`` when no window overlaps that much or none scores above 0."""
    boxes = np.concatenate([windows(v.shape, size, s, kernel, stride) for v, s in zip(levels, scaled_sizes)])
    values = np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in levels])
    iou = metrics.box_iou(boxes, np.broadcast_to(np.asarray(chosen, dtype=np.float64), boxes.shape))
    near = iou >= overlap
    if not near.any():
        return None
    keep = near & (values >= share * values[near].max())
    weight = values[keep] ** power
    if weight.sum() <= 0:
        return None
    return np.concatenate([boxes[keep, :2], boxes[keep, :2] + boxes[keep, 2:]], axis=1), weight


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """The smallest of ``values`` at which the weight of the values up to it reaches ``q`` of the total."""
    order = np.argsort(values, kind="stable")
    reached = np.cumsum(weights[order]) / weights.sum()
    return float(values[order][min(int(np.searchsorted(reached, q)), len(values) - 1)])


def agreed_window(
    levels: Sequence[np.ndarray],
    scaled_sizes: Sequence[tuple[int, int]],
    size: tuple[int, int],
    kernel: int,
    stride: int,
    chosen: Box,
    *,
    quantile: float = QUANTILE,
    share: float = SHARE,
    overlap: float = OVERLAP,
    power: float = POWER,
) -> Box:
    """Where the chosen window's peers agree. The peers are every window of every level that scores at
    least ``share`` x the best value and overlaps ``chosen`` by IoU >= ``overlap``, weighted by value **
    ``power``; the left and top edges are the weighted ``quantile`` of theirs, the right and bottom edges
    the weighted ``1 - quantile`` (a robust intersection; 0.5 is each edge's weighted median). ``chosen``
    itself when no window scores above 0 or the edges cross.
    """
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {quantile}")
    strong = _strong_windows(levels, scaled_sizes, size, kernel, stride, chosen, share, overlap, power)
    if strong is None:
        return chosen
    corners, weight = strong
    x0, y0 = (weighted_quantile(corners[:, k], weight, quantile) for k in (0, 1))
    x1, y1 = (weighted_quantile(corners[:, k], weight, 1.0 - quantile) for k in (2, 3))
    if x1 <= x0 or y1 <= y0:
        return chosen
    return x0, y0, x1 - x0, y1 - y0


def object_map(evidence: np.ndarray, seed: Box) -> np.ndarray:
    """The found object's score map in [0, 1]: inside ``seed`` (pixels of :func:`~fcnx.method.geometry.pixel_box`)
    the evidence above its lowest value there, rescaled so that the peak is 1; 0 outside (and for a flat seed)."""
    x1, y1, x2, y2 = geometry.pixel_box(seed, evidence.shape)
    inside = evidence[y1:y2, x1:x2] - evidence[y1:y2, x1:x2].min()
    heat = np.zeros(evidence.shape, dtype=np.float64)
    if inside.max() > 0:
        heat[y1:y2, x1:x2] = inside / inside.max()
    return heat


@dataclass(frozen=True)
class ClassMap:
    """One net's class map of one category at one pyramid level: per feature cell ``(u, v)``, the head's
    logit (``values``, ``h' x w'``), centred at pixel ``stride * u + origin`` (rows and columns alike) of
    the net's input of ``scaled`` size ``(height, width)``."""

    values: np.ndarray = field(repr=False)
    scaled: tuple[int, int]
    stride: int
    origin: float


def interpolation(cells: int, image_side: int, scaled_side: int, stride: int, origin: float) -> np.ndarray:
    """Linear interpolation weights (``image_side x cells``) of ``cells`` values centred at
    ``stride * u + origin`` of a side of ``scaled_side`` pixels, at the centres of ``image_side`` pixels
    (constant beyond the first and last centres)."""
    position = ((np.arange(image_side) + 0.5) * scaled_side / image_side - origin) / stride
    position = np.clip(position, 0.0, cells - 1.0)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, cells - 1)
    weights = np.zeros((image_side, cells))
    rows = np.arange(image_side)
    np.add.at(weights, (rows, low), 1.0 - (position - low))
    np.add.at(weights, (rows, high), position - low)
    return weights


def class_map_image(class_map: ClassMap, size: tuple[int, int]) -> np.ndarray:
    """``class_map`` at the image's ``size`` (bilinear between cell centres): ``height x width`` float64."""
    values = np.asarray(class_map.values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"expected a class map h x w, got shape {values.shape}")
    rows = interpolation(values.shape[0], size[0], class_map.scaled[0], class_map.stride, class_map.origin)
    cols = interpolation(values.shape[1], size[1], class_map.scaled[1], class_map.stride, class_map.origin)
    return rows @ values @ cols.T


def class_evidence(maps: Sequence[ClassMap], size: tuple[int, int]) -> np.ndarray:
    """The mean of ``maps`` on the image (:func:`class_map_image`), each scaled to [0, 1] first (a flat one is 0)
    and weighted by its number of cells: every cell counts the same, so a finer level's map, which sees
    the object in more cells, weighs more than a coarse one."""
    if not maps:
        raise ValueError("need at least one class map")
    total = np.zeros(size, dtype=np.float64)
    cells = 0
    for class_map in maps:
        image = class_map_image(class_map, size)
        low, high = image.min(), image.max()
        if high > low:
            total += class_map.values.size * (image - low) / (high - low)
        cells += class_map.values.size
    return total / cells


def region_box(heat: np.ndarray, threshold: float, seed: Box) -> Box:
    """The bounding box of the 4-connected region of ``heat >= threshold x`` its peak that covers most
    pixels of ``seed`` (:func:`~fcnx.method.geometry.pixel_box`), else the region of the largest summed
    heat; ``seed`` itself when the map is flat at 0."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    peak = heat.max()
    if peak <= 0:
        return seed
    labels, count = ndimage.label(heat >= threshold * peak)
    x1, y1, x2, y2 = geometry.pixel_box(seed, heat.shape)
    inside = np.bincount(labels[y1:y2, x1:x2].ravel(), minlength=count + 1)[1:]
    if inside.max() > 0:
        region = 1 + int(np.argmax(inside))
    else:
        region = 1 + int(np.argmax(ndimage.sum_labels(heat, labels, range(1, count + 1))))
    rows, cols = np.nonzero(labels == region)
    return float(cols.min()), float(rows.min()), float(cols.max() - cols.min() + 1), float(rows.max() - rows.min() + 1)


def share_inside(box: Box, outer: Box) -> float:
    """The share of ``box``'s area that lies inside ``outer`` (0 for a box of no area)."""
    (x, y, w, h), (ox, oy, ow, oh) = box, outer
    across = max(0.0, min(x + w, ox + ow) - max(x, ox))
    down = max(0.0, min(y + h, oy + oh) - max(y, oy))
    return across * down / (w * h) if w * h > 0 else 0.0


@dataclass(frozen=True)
class Tight:
    """The tight box of one category and the ``evidence`` map that gives its object map.

    ``evidence`` may be smaller than the image (see :func:`tight`); ``factor`` is its ``(height, width)``
    over the image's. ``whole``: the evidence is the class maps' (:func:`class_evidence`), the object
    map over the whole image; else the windows' (:func:`evidence_map`), counted inside the box only.
    """

    box: Box
    evidence: np.ndarray = field(repr=False, compare=False)
    factor: tuple[float, float] = (1.0, 1.0)
    whole: bool = False

    def object_map(self, size: tuple[int, int] | None = None) -> np.ndarray:
        """The object map in [0, 1] (peak 1): the class maps' evidence, or :func:`object_map` of the windows'
        evidence in the tight box; at the evidence's size or resized (bilinear) to ``size``, e.g. the image's."""
        (fy, fx), (x, y, w, h) = self.factor, self.box
        if self.whole:
            peak = self.evidence.max()
            heat = self.evidence / peak if peak > 0 else np.zeros_like(self.evidence)
        else:
            heat = object_map(self.evidence, (x * fx, y * fy, w * fx, h * fy))
        return heat if size is None else resize_map(heat, size)


def resize_map(heat: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A [0, 1] map resized (bilinear, pixel centres aligned) to ``size`` ``(height, width)``; unchanged at that size."""
    if tuple(size) == heat.shape:
        return heat
    zoom = (size[0] / heat.shape[0], size[1] / heat.shape[1])
    return np.clip(ndimage.zoom(heat, zoom, order=1, grid_mode=True, mode="nearest"), 0.0, 1.0)


def tight(
    levels: Sequence[np.ndarray],
    scaled_sizes: Sequence[tuple[int, int]],
    size: tuple[int, int],
    kernel: int,
    stride: int,
    chosen_level: int,
    chosen: Box,
    max_side: int = MAX_SIDE,
    class_maps: Sequence[Sequence[ClassMap]] = (),
) -> Tight:
    """The whole method: ``levels`` are each level's mean probability over nets (``h x w``), in scale
    order; ``chosen`` the window of the selected cell at level ``chosen_level``; ``class_maps`` the
    nets' class maps of the category per level (none for nets without).

    The windows' box is where the chosen window's strong peers agree (:func:`agreed_window`). With class
    maps at the chosen level or a finer one (up to :data:`MAP_SPAN` times its scale), their region is that
    of their evidence (:func:`class_evidence` of those levels) at or above :data:`THRESHOLD` of its peak that overlaps the chosen window most
    (:func:`region_box`); when it overlaps the windows' box by IoU >= :data:`AGREE` or has at least
    :data:`INSIDE` of its area inside it (:func:`share_inside`), it is the tight box, and the class maps'
    evidence (over its peak) the object map. Otherwise (no class maps, or a region elsewhere) the tight
    box is the windows' box and the object map the windows' evidence of those levels (:func:`evidence_map`)
    inside it. An image whose long side exceeds ``max_side`` is worked on at that long side: the evidence
    map has that size, the boxes are in the image's pixels.
    """
    height, width = size
    factor = min(1.0, max_side / max(height, width))
    work = (max(1, round(height * factor)), max(1, round(width * factor)))
    fy, fx = work[0] / height, work[1] / width
    seed = (chosen[0] * fx, chosen[1] * fy, chosen[2] * fx, chosen[3] * fy)

    def back(b: Box) -> Box:
        return b[0] / fx, b[1] / fy, b[2] / fx, b[3] / fy

    box = agreed_window(levels, scaled_sizes, work, kernel, stride, seed)
    base = min(scaled_sizes[chosen_level])
    span = [k for k in range(chosen_level, len(class_maps)) if min(scaled_sizes[k]) <= 1.01 * MAP_SPAN * base]
    maps = [m for k in span for m in class_maps[k]]  # 1.01: the slack of rounding the levels' sizes
    if maps:
        heat = class_evidence(maps, work)
        region = region_box(heat, THRESHOLD, seed)
        if metrics.box_iou(region, box) >= AGREE or share_inside(region, box) >= INSIDE:
            return Tight(back(region), heat, (fy, fx), whole=True)
    finer = range(chosen_level, len(levels))
    evidence = evidence_map([levels[k] for k in finer], [scaled_sizes[k] for k in finer], work, kernel, stride)
    return Tight(back(box), evidence, (fy, fx))


def tight_of(
    choice: Choice,
    size: tuple[int, int],
    scaled_sizes: Sequence[tuple[int, int]],
    kernel: int,
    stride: int,
    window: Box,
    class_maps: Sequence[Sequence[ClassMap]] = (),
) -> Tight:
    """:func:`tight` for a :class:`~fcnx.method.selection.Choice` over levels of ``scaled_sizes`` whose cell has ``window``."""
    levels = [summed / choice.nets for summed in choice.summed]
    return tight(
        levels,
        scaled_sizes[: len(levels)],
        size,
        kernel,
        stride,
        choice.level,
        window,
        class_maps=class_maps[: len(levels)],
    )
