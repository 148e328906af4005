"""Coarse-to-fine search geometry: which part of a large pyramid level to compute, and where it is exact.

Pure numpy (and ``scipy.ndimage`` for connected regions). A level's cell ``(i, j)`` is the
classifier on the window ``[stride * i, stride * i + kernel)`` x ``[stride * j, ...)`` of the
scaled image. An FCN run on a sub-window of the scaled image gives, for the cells inside it, the
same values as on the whole level only where the cell is far enough from the sub-window's cut
borders (there the padding differs from the real pixels around it): ``margin`` cells.

Sub-windows start at multiples of ``stride`` (so that their cells are the level's cells, shifted)
and their sides keep the level's side modulo ``stride`` (TF-"same" padding depends on the input's
side modulo each layer's stride: this keeps every layer's padding, hence its sampling grid, the same).

- :func:`span`: one axis of a sub-window for a run of cells, and the cells it gives exactly;
- :func:`cover`: sub-windows covering a mask of wanted cells;
- :func:`nearest_cells`: where cells of one level lie in another (nearest window centre);
- :func:`candidates`: the cells of a level worth computing, from a coarser level's values;
- :func:`overlapping`, :func:`meeting`: the cells the tight box of a choice reads (:mod:`fcnx.method.evidence`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from fcnx.method import evidence, metrics
from fcnx.method.selection import Level

#: the searches ``fcnx crop --search`` offers: every level whole, or the largest ones in part (:mod:`fcnx.engine.search`)
SEARCHES = ("full", "coarse-to-fine")


@dataclass(frozen=True)
class Span:
    """One axis of a sub-window: pixels ``[start, stop)`` of the level, exact for cells ``[first, last)``."""

    start: int
    stop: int
    first: int
    last: int


def span(lo: int, hi: int, cells: int, side: int, kernel: int, stride: int, margin: int) -> Span:
    """The sub-window axis that gives cells ``[lo, hi)`` (of ``cells`` along a level side of ``side`` pixels) exactly.

    It reaches ``margin`` cells beyond them on each side (less at the level's borders, which are real
    borders), starts at a multiple of ``stride`` and ends at ``side`` minus a multiple of ``stride``.
    """
    if not 0 <= lo < hi <= cells or margin < 0:
        raise ValueError(f"bad cell run [{lo}, {hi}) of {cells} cells, margin {margin}")
    first = max(0, lo - margin)
    start = stride * first
    needed = stride * (hi - 1 + margin) + kernel
    stop = side if needed >= side else side - stride * ((side - needed) // stride)
    exact_first = 0 if first == 0 else first + margin
    exact_last = cells if stop == side else min(cells, (stop - kernel) // stride - margin + 1)
    return Span(start, stop, exact_first, exact_last)


@dataclass(frozen=True)
class Window:
    """A sub-window of a level: its rows and columns (:class:`Span`)."""

    rows: Span
    cols: Span

    @property
    def pixels(self) -> int:
        return (self.rows.stop - self.rows.start) * (self.cols.stop - self.cols.start)

    def exact(self, cells: tuple[int, int]) -> np.ndarray:
        """The level's cells (``rows x cols`` bool) this sub-window gives exactly."""
        mask = np.zeros(cells, dtype=bool)
        mask[self.rows.first : self.rows.last, self.cols.first : self.cols.last] = True
        return mask


def cover(
    wanted: np.ndarray, scaled: tuple[int, int], kernel: int, stride: int, margin: int, known: np.ndarray | None = None
) -> list[Window]:
    """Sub-windows that give every ``wanted`` cell not yet ``known`` exactly (none when all are known).

    Each group of touching cells gets the sub-window of its bounding box; groups whose sub-windows
    would overlap (closer than two margins) are merged into their bounding box.
    """
    todo = wanted & ~known if known is not None else wanted.copy()
    if not todo.any():
        return []
    labels, _ = ndimage.label(todo, np.ones((3, 3), bool))
    boxes = [[r.start, r.stop, c.start, c.stop] for r, c in ndimage.find_objects(labels)]
    merged = True
    while merged:  # merge boxes whose sub-windows would overlap
        merged = False
        for a in range(len(boxes)):
            for b in range(a + 1, len(boxes)):
                (r0, r1, c0, c1), (s0, s1, d0, d1) = boxes[a], boxes[b]
                if r0 - 2 * margin < s1 and s0 - 2 * margin < r1 and c0 - 2 * margin < d1 and d0 - 2 * margin < c1:
                    boxes[a] = [min(r0, s0), max(r1, s1), min(c0, d0), max(c1, d1)]
                    del boxes[b]
                    merged = True
                    break
            if merged:
                break
    cells = todo.shape
    return [
        Window(
            span(r0, r1, cells[0], scaled[0], kernel, stride, margin),
            span(c0, c1, cells[1], scaled[1], kernel, stride, margin),
        )
        for r0, r1, c0, c1 in boxes
    ]


def nearest_cells(
    cells: tuple[int, int],
    scaled: tuple[int, int],
    target_cells: tuple[int, int],
    target_scaled: tuple[int, int],
    kernel: int,
    stride: int,
    size: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """For each cell row and column of a level (``cells``, image scaled to ``scaled``), the row and column of
    the ``target`` level whose window centre is nearest on the image of ``size``."""
    out = []
    for axis in (0, 1):
        centres = (stride * np.arange(cells[axis]) + kernel / 2) * size[axis] / scaled[axis]
        at_target = centres * target_scaled[axis] / size[axis]
        index = np.rint((at_target - kernel / 2) / stride).astype(np.int64)
        out.append(np.clip(index, 0, target_cells[axis] - 1))
    return out[0], out[1]


def ranking(level: Level, rule: str) -> np.ndarray:
    """Each cell's rank key as one float (larger is better): summed probability (``"paper"``), or votes then
    summed probability (``"votes-first"``); ``-inf`` where the level is not known."""
    summed = level.summed()
    key = summed if rule == "paper" else level.votes() * (level.nets + 1.0) + summed
    return np.where(level.known_cells(), key, -np.inf)


def candidates(
    source: Level,
    scaled: tuple[int, int],
    target_cells: tuple[int, int],
    target_scaled: tuple[int, int],
    kernel: int,
    stride: int,
    size: tuple[int, int],
    rule: str,
    top: int,
    grow: int,
) -> np.ndarray:
    """The cells of a target level (``rows x cols`` bool) near the ``top`` best cells of ``source`` (a coarser
    level) under ``rule``: each mapped to the target cell of nearest window centre, grown by ``grow`` cells."""
    key = ranking(source, rule)
    order = np.argsort(-key, axis=None, kind="stable")[:top]
    order = order[np.isfinite(key.flat[order])]
    rows, cols = nearest_cells(key.shape, scaled, target_cells, target_scaled, kernel, stride, size)
    wanted = np.zeros(target_cells, dtype=bool)
    for flat in order:
        i, j = np.unravel_index(int(flat), key.shape)
        wanted[rows[i], cols[j]] = True
    if grow:
        wanted = ndimage.binary_dilation(wanted, np.ones((3, 3), bool), iterations=grow)
    return wanted


def near_border(level: Level, cell: tuple[int, int], reach: int) -> bool:
    """Whether a cell not known lies within ``reach`` cells (Chebyshev) of ``cell``."""
    i, j = cell
    block = level.known_cells()[max(0, i - reach) : i + reach + 1, max(0, j - reach) : j + reach + 1]
    return not bool(block.all())


def overlapping(
    cells: Sequence[tuple[int, int]],
    scaled_sizes: Sequence[tuple[int, int]],
    size: tuple[int, int],
    kernel: int,
    stride: int,
    chosen: evidence.Box,
    overlap: float = evidence.OVERLAP,
) -> list[np.ndarray]:
    """Per level, the cells (``rows x cols`` bool) whose window overlaps ``chosen`` by IoU >= ``overlap``: the
    windows :func:`fcnx.method.evidence.agreed_window` weighs (all it reads)."""
    out = []
    for c, s in zip(cells, scaled_sizes):
        boxes = evidence.windows(c, size, s, kernel, stride)
        iou = metrics.box_iou(boxes, np.broadcast_to(np.asarray(chosen, dtype=np.float64), boxes.shape))
        out.append((iou >= overlap).reshape(c))
    return out


def meeting(
    cells: Sequence[tuple[int, int]],
    scaled_sizes: Sequence[tuple[int, int]],
    size: tuple[int, int],
    kernel: int,
    stride: int,
    box: evidence.Box,
    pad: float = 0.0,
) -> list[np.ndarray]:
    """Per level, the cells (``rows x cols`` bool) whose window meets ``box`` grown by ``pad`` pixels: all that the
    evidence maps read inside ``box`` (:meth:`fcnx.method.evidence.Tight.object_map` reads them in the tight box)."""
    x0, y0, x1, y1 = box[0] - pad, box[1] - pad, box[0] + box[2] + pad, box[1] + box[3] + pad
    out = []
    for c, s in zip(cells, scaled_sizes):
        b = evidence.windows(c, size, s, kernel, stride)
        meets = (b[:, 0] < x1) & (b[:, 0] + b[:, 2] > x0) & (b[:, 1] < y1) & (b[:, 1] + b[:, 3] > y0)
        out.append(meets.reshape(c))
    return out
