"""Heatmaps of nets with other kernels or strides on the reference net's cell grid: pure numpy.

A mixed ensemble's *reference* net (the finest grid on the image, least ``S / K``; see
:class:`fcnx.engine.ensemble.Ensemble`): its kernel ``K`` and stride ``S`` define each
pyramid level's size ``L`` (per axis) and the cell grid the selection runs on; reference cell
``i`` is the window ``[S i, S i + K)`` of the level. Net ``n`` (kernel ``K_n``, stride ``S_n``) is
fed the original image resized to :func:`net_side` ``L_n ~ L K_n / K``, so its kernel covers the
same part of the image as the reference kernel; its cell ``m`` is the window
``[S_n m, S_n m + K_n)`` of that input. Along each axis, reference cell ``i`` takes the net's
value at the cell whose window has the same centre in the image (:func:`source_positions`),
nearest or linearly interpolated between the two cells around it (:func:`axis_weights`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

#: how a reference cell takes a net's value between that net's cells
MODES = ("bilinear", "nearest")


def net_side(side: int, kernel: int, reference_kernel: int) -> int:
    """Net input side at a level whose reference side is ``side``: ``side * kernel / reference_kernel``, rounded, >= ``kernel``."""
    return max(kernel, round(side * kernel / reference_kernel))


def source_positions(
    cells: int, side: int, kernel: int, stride: int, source_side: int, source_kernel: int, source_stride: int
) -> np.ndarray:
    """Per reference cell ``0 .. cells - 1`` along one axis, the (fractional) index of the net cell with the same centre.

    ``side``, ``kernel``, ``stride``: the reference level's side, kernel and stride; ``source_*``
    the net's. Centres are compared in image space: reference cell ``i`` is centred at
    ``(S i + K / 2) / L`` of the axis, net cell ``m`` at ``(S_n m + K_n / 2) / L_n``.
    """
    centre = (stride * np.arange(cells, dtype=np.float64) + kernel / 2) * source_side / side
    return (centre - source_kernel / 2) / source_stride


class Axis(NamedTuple):
    """Along one axis, reference cell ``i`` takes ``(1 - weight[i]) * net[low[i]] + weight[i] * net[high[i]]``."""

    low: np.ndarray  # int64
    high: np.ndarray  # int64: low + 1, or low itself where the weight is 0
    weight: np.ndarray  # float32, in [0, 1)


def axis_weights(positions: np.ndarray, cells: int, mode: str = "bilinear") -> Axis:
    """The cells and weights that resample a net's ``cells`` along one axis at ``positions``.

    Positions beyond the net's first or last cell are clamped to it (rounding of the sizes can
    put the last reference centre a fraction of a cell past the net's last one). ``nearest``
    rounds halves up and always has weight 0.
    """
    if cells < 1:
        raise ValueError(f"a net needs at least one cell, got {cells}")
    if mode not in MODES:
        raise ValueError(f"unknown alignment {mode!r}; use one of {', '.join(MODES)}")
    clamped = np.clip(positions, 0, cells - 1)
    if mode == "nearest":
        index = np.minimum(np.floor(clamped + 0.5), cells - 1).astype(np.int64)
        return Axis(index, index, np.zeros(len(index), dtype=np.float32))
    low = np.floor(clamped).astype(np.int64)
    weight = clamped - low
    high = np.where(weight > 0, np.minimum(low + 1, cells - 1), low)
    return Axis(low, high, weight.astype(np.float32))
