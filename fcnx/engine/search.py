"""The coarse-to-fine search (``Cropper(search="coarse-to-fine")``, ``fcnx crop --search coarse-to-fine``).

The small pyramid levels are computed whole; each of the :data:`FINE` largest ones only in
sub-windows of the scaled image (:mod:`fcnx.method.subwindows`) around the cells that the level
before it ranks best for the image's categories (:data:`TOP` of them, grown by the cells whose
windows meet theirs: the evidence a tight box there reads), then around each category's best cell at
this level for as long as it lies next to a cell not computed. After the selection, every cell the
chosen box reads (:func:`~fcnx.method.subwindows.overlapping` and :func:`~fcnx.method.subwindows.meeting`)
is computed too and the selection repeated until it stands, so the chosen cell's values and its
square and tight boxes are those of the full search for that choice; cells not computed are never
chosen (:class:`fcnx.method.selection.Level` ``known``). The choice itself may differ from the full
search's where a better cell lies in a part not computed (docs/performance.md measures how often).

Each sub-window keeps a margin of :data:`MARGINS` cells from its cut borders, measured per net
(``benchmarks/backend_speed.py --margins``): the cells where its probabilities differ from the
whole level's by at most 1e-5. A level whose sub-windows would hold more than :data:`MAX_SHARE` of
its pixels is computed whole. Ensembles with a net missing from :data:`MARGINS`, or of nets that
differ in kernel or stride, search in full.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from fcnx.engine.ensemble import Ensemble, resize
from fcnx.method import evidence, geometry, subwindows
from fcnx.method.selection import Level, Selector, best_cell
from fcnx.method.subwindows import SEARCHES

__all__ = ["FINE", "MARGINS", "SEARCHES", "PartialLevel", "extend", "margin", "settle"]

#: the largest levels computed in part
FINE = 2
#: cells per category of the level before followed to the next level
TOP = 6
#: a level whose sub-windows would hold more than this share of its pixels is computed whole
MAX_SHARE = 0.6
#: per backbone, the margin (cells) a sub-window needs for its cells to match the whole level's
#: probabilities within 1e-5 (measured at the kernels shown: ``benchmarks/backend_speed.py --margins``)
MARGINS = {
    "tiny_vgg": 0,  # kernel 56 (stride 8): valid padding
    "tiny_resnet": 3,
    "tiny_inception": 2,
    "tiny_mobilenet": 3,
    "efficientnet_lite0": 12,  # kernel 224 (stride 32): 384 to 480 pixels
    "efficientnet_lite1": 15,
    "efficientnet_lite2": 14,
}


def margin(ensemble: Ensemble) -> int | None:
    """The margin (cells) of the ensemble's sub-windows: its nets' largest; ``None`` when one is not measured
    or the nets differ in kernel or stride (their cells are resampled, not cut out)."""
    if ensemble.mixed:
        return None
    found = [MARGINS.get(fcn.name) for fcn in ensemble.fcns]
    return None if any(m is None for m in found) else max(m for m in found if m is not None)


class PartialLevel:
    """One image's pyramid level, computed cell block by cell block: all classes' probabilities where ``known``."""

    def __init__(self, ensemble: Ensemble, pixels: torch.Tensor, scaled: tuple[int, int], margin: int) -> None:
        self.ensemble, self.pixels, self.scaled, self.margin = ensemble, pixels, scaled, margin
        self.cells = ensemble.cells(scaled)
        self.probs = np.zeros((len(ensemble), len(ensemble.classes), *self.cells), dtype=np.float32)
        self.known = np.zeros(self.cells, dtype=bool)
        #: pixels of the scaled image run through the nets so far
        self.computed = 0
        self._level: torch.Tensor | None = None

    def fill(self, wanted: np.ndarray) -> None:
        """Compute the ``wanted`` cells not known yet; the whole level when their sub-windows would hold more
        than :data:`MAX_SHARE` of its pixels."""
        windows = subwindows.cover(
            wanted, self.scaled, self.ensemble.kernel, self.ensemble.stride, self.margin, self.known
        )
        if not windows:
            return
        level = self._resized()
        area = self.scaled[0] * self.scaled[1]
        if sum(w.pixels for w in windows) > MAX_SHARE * area:
            full = subwindows.Window(
                subwindows.Span(0, self.scaled[0], 0, self.cells[0]),
                subwindows.Span(0, self.scaled[1], 0, self.cells[1]),
            )
            windows = [full]
        for window in windows:
            rows, cols = window.rows, window.cols
            probs = self.ensemble.probabilities(level[:, :, rows.start : rows.stop, cols.start : cols.stop])
            stride = self.ensemble.stride
            r0, c0 = rows.start // stride, cols.start // stride
            exact = window.exact(self.cells) & ~self.known
            block = probs[0, :, :, rows.first - r0 : rows.last - r0, cols.first - c0 : cols.last - c0].cpu().numpy()
            target = self.probs[:, :, rows.first : rows.last, cols.first : cols.last]
            new = exact[rows.first : rows.last, cols.first : cols.last]
            target[:, :, new] = block[:, :, new]
            self.known |= exact
            self.computed += window.pixels

    def level(self, category: int) -> Level:
        """The :class:`Level` of ``category`` (0 and no vote where not known)."""
        prob = self.probs[:, category]
        vote = (self.probs.argmax(axis=1) == category) & self.known
        return Level(prob.copy(), vote, None if self.known.all() else self.known.copy())

    def _resized(self) -> torch.Tensor:
        if self._level is None:
            self._level = resize(self.pixels, self.scaled)
        return self._level


def extend(
    partial: PartialLevel,
    sources: Sequence[Level],
    source_scaled: tuple[int, int],
    categories: Sequence[int],
    size: tuple[int, int],
    rule: str,
) -> list[Level]:
    """Compute ``partial`` around the best cells of the level before it (``sources``, one per category, scaled
    to ``source_scaled``) and, per category, around its own best cell while a cell next to that is unknown.

    Returns the categories' levels.
    """
    kernel, stride = partial.ensemble.kernel, partial.ensemble.stride
    reach = -(-kernel // stride)  # cells whose windows meet a cell's window
    wanted = np.zeros(partial.cells, dtype=bool)
    for source in sources:
        wanted |= subwindows.candidates(
            source, source_scaled, partial.cells, partial.scaled, kernel, stride, size, rule, TOP, reach
        )
    partial.fill(wanted)
    levels = []
    for category in categories:
        level = partial.level(category)
        cell = best_cell(level, rule)
        while subwindows.near_border(level, cell, 1):
            block = np.zeros(partial.cells, dtype=bool)
            block[max(0, cell[0] - reach) : cell[0] + reach + 1, max(0, cell[1] - reach) : cell[1] + reach + 1] = True
            partial.fill(block)
            level = partial.level(category)
            cell = best_cell(level, rule)
        levels.append(level)
    return levels


def settle(
    levels: list[Level],
    partials: dict[int, PartialLevel],
    category: int,
    size: tuple[int, int],
    scaled_sizes: Sequence[tuple[int, int]],
    rule: str,
) -> Selector:
    """The selection over ``levels`` (in place: ``partials`` maps level indices to their partial levels) once
    every cell its choice's tight box reads is computed: the chosen window's peers, then every window
    meeting the tight box (its object map's evidence), so that both boxes are the full search's for that choice."""
    while True:
        selector = Selector(rule)
        for level in levels:
            selector.add(level)
        if not partials:
            return selector
        ensemble = next(iter(partials.values())).ensemble
        kernel, stride = ensemble.kernel, ensemble.stride
        choice = selector.result()
        window = geometry.cell_to_box(choice.cell, size, scaled_sizes[choice.level], kernel, stride)
        cells = [level.prob.shape[1:] for level in levels]
        if _fill(levels, partials, category, subwindows.overlapping(cells, scaled_sizes, size, kernel, stride, window)):
            continue
        fitted = evidence.tight_of(choice, size, scaled_sizes, kernel, stride, window).box
        pad = max(1.0, max(size) / evidence.MAX_SIDE) + 1.0  # a pixel of the evidence map, and rounding
        if not _fill(
            levels, partials, category, subwindows.meeting(cells, scaled_sizes, size, kernel, stride, fitted, pad)
        ):
            return selector


def _fill(levels: list[Level], partials: dict[int, PartialLevel], category: int, needed: list[np.ndarray]) -> bool:
    """Compute the ``needed`` cells of the partial levels; whether any was missing."""
    missing = [index for index, partial in partials.items() if (needed[index] & ~partial.known).any()]
    for index in missing:
        partials[index].fill(needed[index])
        levels[index] = partials[index].level(category)
    return bool(missing)
