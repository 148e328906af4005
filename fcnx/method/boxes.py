"""The box rules of ``fcnx crop --box``, in one table (:data:`RULES`), as pure functions of one category's pyramid.

A :class:`Pyramid` is what the ensemble says about one category of one image: per level (scale order) the
nets' probabilities and votes (:class:`~fcnx.method.selection.Level`) and their class maps
(:class:`~fcnx.method.evidence.ClassMap`), optionally followed by the whole-image view (:data:`WHOLE_VIEW`:
the image squashed to one kernel window, as the classifiers were trained to see it), which the selection
never picks but whose class maps show a large object's extent. A :class:`Found` is a pyramid with the
selection's :class:`~fcnx.method.selection.Choice`; each rule maps it (and, where the rule says so, the
image's pixels) to a box ``(x, y, w, h)`` in the image's pixels:

- ``square``: the paper's kernel window of the selected cell;
- ``tight``: where the levels' evidence around that window agrees (:func:`fcnx.method.evidence.tight`);
- ``fitted``: the tight box snapped to the object's pixels by GrabCut (:mod:`fcnx.method.fitting`);
- ``object``: the whole object (:func:`object_box`): the region of the class maps of the coarse levels and of
  the whole-image view, grown from their peak down to a low share of it, with a margin;
- ``fitted-object``: that box snapped to the object's pixels by GrabCut, with a small margin
  (:func:`fitted_object_box`).

:func:`rule` looks a rule up by name; :func:`box` computes one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
from scipy import ndimage

from fcnx.method import evidence, fitting, geometry, metrics
from fcnx.method.evidence import ClassMap, Tight
from fcnx.method.selection import DEFAULT_RULE, Choice, Level, select

Box = tuple[float, float, float, float]

#: the whole-image view: the image squashed to ``kernel x kernel`` (one window: the classifiers' native view)
WHOLE_VIEW = "whole image squashed to the kernel"

# The object box's parameters were chosen on the tuning photos of docs/crop.md (benchmarks/real_photos.py --sweep):
#: where the whole-image view is at least this sure of the category as the selected cell (mean probabilities) ...
OBJECT_GATE = 1.0
#: ... the class maps of the levels up to this factor of the first level's scale and of the whole view ...
OBJECT_SPAN = 1.0
#: ... give the region at or above this share of their peak in the tight box, grown from it ...
OBJECT_THRESHOLD = 0.1
#: ... with a margin of this share of its sides on each edge ...
OBJECT_PAD = 0.0
#: ... stretched to the image's borders along an axis it spans at least this share of
OBJECT_SNAP = 0.8

# The fitted object box's, chosen on the same tuning photos (benchmarks/real_photos.py --sweep fitted-object):
#: the object box grows where the whole-image view is at least this sure as the selected cell ...
FITTED_GATE = 0.5
#: ... to this share of the evidence's peak; then fitted to the pixels and grown by this share of its sides
FITTED_THRESHOLD = 0.3
FITTED_PAD = 0.05


@dataclass(frozen=True)
class Pyramid:
    """One category of one image through the ensemble: the image's ``size`` ``(height, width)``, the grid
    (``kernel``, ``stride``), per level its ``scaled`` size, its :class:`~fcnx.method.selection.Level` and
    the nets' class maps of the category (empty for nets without); with ``whole_view`` the last level is
    the whole-image view (:data:`WHOLE_VIEW`), which :attr:`pyramid_levels` leave out."""

    size: tuple[int, int]
    kernel: int
    stride: int
    scaled: Sequence[tuple[int, int]]
    levels: Sequence[Level] = field(repr=False)
    class_maps: Sequence[Sequence[ClassMap]] = field(repr=False)
    whole_view: bool = False

    @property
    def pyramid_levels(self) -> int:
        """How many levels the selection sees (all but the whole-image view)."""
        return len(self.levels) - int(self.whole_view)

    def select(self, rule: str = DEFAULT_RULE) -> Found:
        """The selection under ``rule`` (:func:`~fcnx.method.selection.select`) over the pyramid's levels."""
        return Found(self, select(self.levels[: self.pyramid_levels], rule))


@dataclass
class Found:
    """A :class:`Pyramid` with the selection's ``choice``, and the image's ``pixels`` (``H' x W' x 3`` uint8, any
    size of its aspect) where a rule needs them."""

    pyramid: Pyramid
    choice: Choice
    pixels: np.ndarray | None = field(default=None, repr=False)
    #: the object evidence by span (:func:`object_evidence`), computed once for every rule that reads it
    evidence_by_span: dict[float, np.ndarray] = field(default_factory=dict, repr=False)

    @cached_property
    def window(self) -> Box:
        """The selected cell's kernel window (:func:`~fcnx.method.geometry.cell_to_box`)."""
        p = self.pyramid
        return geometry.cell_to_box(self.choice.cell, p.size, p.scaled[self.choice.level], p.kernel, p.stride)

    @cached_property
    def tight(self) -> Tight:
        """:func:`fcnx.method.evidence.tight_of` over the pyramid's levels."""
        p, count = self.pyramid, self.pyramid.pyramid_levels
        return evidence.tight_of(
            self.choice, p.size, list(p.scaled[:count]), p.kernel, p.stride, self.window, list(p.class_maps[:count])
        )


def _square(found: Found) -> Box:
    return found.window


def _tight(found: Found) -> Box:
    return found.tight.box


def _fitted(found: Found) -> Box:
    if found.pixels is None:
        raise ValueError("the fitted box needs the image's pixels")
    return fitting.fit_tight(found.pixels, found.pyramid.size, found.tight)


def grow(heat: np.ndarray, threshold: float, seed: tuple[int, ...]) -> tuple[int, int, int, int]:
    """Pixel corners ``(x0, y0, x1, y1)`` of the 4-connected region of ``heat >= threshold x heat[seed]`` that holds
    the pixel ``seed`` (row, column): the region grown from it."""
    labels, _ = ndimage.label(heat >= threshold * heat[seed])
    rows, cols = np.nonzero(labels == labels[seed])
    return int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1


def pad_box(box: Box, pad: float, size: tuple[int, int]) -> Box:
    """``box`` grown by ``pad`` of its sides on each edge (shrunk for a negative ``pad``), clipped to an image of ``size``."""
    x, y, w, h = box
    x0, y0 = max(0.0, x - pad * w), max(0.0, y - pad * h)
    x1, y1 = min(float(size[1]), x + w + pad * w), min(float(size[0]), y + h + pad * h)
    return x0, y0, x1 - x0, y1 - y0


def object_evidence(pyramid: Pyramid, span: float = OBJECT_SPAN, max_side: int = evidence.MAX_SIDE) -> np.ndarray:
    """The class evidence (:func:`~fcnx.method.evidence.class_evidence`) of the whole-image view and the levels up
    to ``span`` times the first level's scale, at the image's size shrunk to a long side of ``max_side``."""
    height, width = pyramid.size
    factor = min(1.0, max_side / max(height, width))
    work = (max(1, round(height * factor)), max(1, round(width * factor)))
    first = min(pyramid.scaled[0])
    count = pyramid.pyramid_levels
    chosen = [k for k in range(count) if min(pyramid.scaled[k]) <= 1.01 * span * first]
    if pyramid.whole_view:
        chosen.append(count)
    maps = [m for k in chosen for m in pyramid.class_maps[k]]
    return evidence.class_evidence(maps, work) if maps else np.zeros(work)


def whole_view_share(found: Found) -> float:
    """How sure the whole-image view is of the category, against the selected cell: the nets' mean probability
    there over their mean at the selected cell (0 without the view)."""
    p = found.pyramid
    if not p.whole_view or found.choice.mean_confidence <= 0:
        return 0.0
    return float(np.mean(p.levels[-1].prob)) / found.choice.mean_confidence


def snap_box(box: Box, snap: float, size: tuple[int, int]) -> Box:
    """``box`` stretched to the borders of an image of ``size`` along each axis where it spans at least ``snap``
    of the image (an object that fills most of the frame reaches its edges); unchanged for ``snap`` > 1."""
    x, y, w, h = box
    if w >= snap * size[1]:
        x, w = 0.0, float(size[1])
    if h >= snap * size[0]:
        y, h = 0.0, float(size[0])
    return x, y, w, h


def union(a: Box, b: Box) -> Box:
    """The smallest box holding both."""
    x0, y0 = min(a[0], b[0]), min(a[1], b[1])
    x1, y1 = max(a[0] + a[2], b[0] + b[2]), max(a[1] + a[3], b[1] + b[3])
    return x0, y0, x1 - x0, y1 - y0


def object_box(
    found: Found,
    span: float = OBJECT_SPAN,
    threshold: float = OBJECT_THRESHOLD,
    pad: float = OBJECT_PAD,
    gate: float = OBJECT_GATE,
    seeded: bool = True,
    snap: float = OBJECT_SNAP,
) -> Box:
    """The whole object. Where the whole-image view is at least ``gate`` as sure of the category as the selected
    cell (:func:`whole_view_share`: the object is large enough for the classifiers' native view), the region of
    :func:`object_evidence` at or above ``threshold`` of its peak in the tight box (``seeded``; else of its global
    peak) that holds that peak (:func:`grow`), joined with the tight box (:func:`union`); else the tight box.
    Either grown by ``pad`` of its sides (:func:`pad_box`), then stretched to the image's borders along each
    axis where it already spans at least ``snap`` of it (:func:`snap_box`)."""
    p, tight = found.pyramid, found.tight.box
    if whole_view_share(found) < gate:
        return snap_box(pad_box(tight, pad, p.size), snap, p.size)
    if span not in found.evidence_by_span:
        found.evidence_by_span[span] = object_evidence(p, span)
    heat = found.evidence_by_span[span]
    if not heat.max() > 0:
        return snap_box(pad_box(tight, pad, p.size), snap, p.size)
    fy, fx = heat.shape[0] / p.size[0], heat.shape[1] / p.size[1]
    if seeded:
        x1, y1, x2, y2 = geometry.pixel_box((tight[0] * fx, tight[1] * fy, tight[2] * fx, tight[3] * fy), heat.shape)
        inside = np.full(heat.shape, -np.inf)
        inside[y1:y2, x1:x2] = heat[y1:y2, x1:x2]
        peak = divmod(int(np.argmax(inside)), heat.shape[1])
    else:
        peak = divmod(int(np.argmax(heat)), heat.shape[1])
    x0, y0, x1, y1 = grow(heat, threshold, peak)
    region = (x0 / fx, y0 / fy, (x1 - x0) / fx, (y1 - y0) / fy)
    return snap_box(pad_box(union(region, tight), pad, p.size), snap, p.size)


def fitted_object_box(
    found: Found,
    gate: float = FITTED_GATE,
    threshold: float = FITTED_THRESHOLD,
    pad: float = FITTED_PAD,
    snap: float = OBJECT_SNAP,
) -> Box:
    """The whole object fitted to its pixels: the object box (:func:`object_box` at ``gate`` and ``threshold``,
    without margin or snap) snapped to the object's pixels by GrabCut as the fitted box is
    (:func:`fcnx.method.fitting.fit_tight`: seeded by the box and the class maps), grown by ``pad`` of its sides
    (:func:`pad_box`) and stretched to the borders along each axis it spans at least ``snap`` of (:func:`snap_box`)."""
    if found.pixels is None:
        raise ValueError("the fitted object box needs the image's pixels")
    p = found.pyramid
    grown = object_box(found, threshold=threshold, pad=0.0, gate=gate, snap=2.0)
    fitted = fitting.fit_tight(found.pixels, p.size, found.tight, grown)
    return snap_box(pad_box(fitted, pad, p.size), snap, p.size)


@dataclass(frozen=True)
class Rule:
    """One box rule: its ``name`` (``--box``), ``function``, whether it needs the image's ``pixels`` and
    whether the whole-image view (:data:`WHOLE_VIEW`), and its ``help``."""

    name: str
    function: Callable[[Found], Box]
    help: str
    pixels: bool = False
    whole_view: bool = False


#: every box rule, in the order ``--box`` lists them
RULES: dict[str, Rule] = {
    r.name: r
    for r in (
        Rule("square", _square, "the paper's crop: the kernel window of the best cell (its most telling part)"),
        Rule(
            "tight",
            _tight,
            "a box of any aspect where the levels' evidence around that window agrees (tight on the most "
            "telling part: small objects, several categories side by side)",
        ),
        Rule(
            "fitted",
            _fitted,
            "the tight box snapped to the object's pixels by GrabCut (the sharpest box where it holds the "
            "object, but it cuts large objects more often)",
            pixels=True,
        ),
        Rule(
            "object",
            object_box,
            "the whole object: where the view of the whole image is as sure of the category as the best cell, "
            "the class maps grown from their peak to the object's extent, else the tight box (no pixel fitting)",
            whole_view=True,
        ),
        Rule(
            "fitted-object",
            fitted_object_box,
            "the object box snapped to the object's pixels by GrabCut, with a 5 % margin (the whole object "
            "where the whole-image view sees it, else the fitted box; best measured on real photos: the default)",
            pixels=True,
            whole_view=True,
        ),
    )
}

#: the rule ``fcnx crop`` uses unless told otherwise (docs/crop.md: best on the held-out whole real photos)
DEFAULT = "fitted-object"


#: ``--instances``: a further instance's cell must have at least this share of the selected cell's summed probability
INSTANCE_SHARE = 0.5
#: ... and boxes overlapping a kept one by more than this IoU, or lying in it by more than this share, are that one
NMS_IOU = 0.3
NMS_INSIDE = 0.7


def candidates(found: Found, share: float = INSTANCE_SHARE) -> list[Choice]:
    """The selected cell, then every cell of the pyramid's levels where a net votes for the category and the
    summed probability reaches ``share`` of the selected cell's, best first (votes, then confidence): the
    peaks further instances may start from."""
    choice, pyramid = found.choice, found.pyramid
    out = [choice]
    for index in range(min(pyramid.pyramid_levels, len(choice.summed))):
        level = pyramid.levels[index]
        summed, votes = level.summed(), level.votes()
        for i, j in zip(*np.nonzero((votes > 0) & (summed >= share * choice.confidence))):
            if (index, (int(i), int(j))) == (choice.level, choice.cell):
                continue
            out.append(
                replace(
                    choice,
                    level=index,
                    cell=(int(i), int(j)),
                    votes=int(votes[i, j]),
                    confidence=float(summed[i, j]),
                    net_scores=tuple(float(p) for p in level.prob[:, i, j]),
                    net_votes=tuple(bool(v) for v in level.vote[:, i, j]),
                    heatmap=summed,
                )
            )
    return out[:1] + sorted(out[1:], key=lambda c: (c.votes, c.confidence), reverse=True)


def _same(a: Box, b: Box) -> bool:
    """Whether two boxes are one instance (:data:`NMS_IOU`, :data:`NMS_INSIDE`)."""
    iou = float(metrics.box_iou(a, b))
    return iou > NMS_IOU or evidence.share_inside(a, b) > NMS_INSIDE or evidence.share_inside(b, a) > NMS_INSIDE


def instances(found: Found, count: int, function: Callable[[Found], Box]) -> list[tuple[Box, Found]]:
    """Up to ``count`` boxes of the category (``function`` of each peak, :func:`candidates`), each with the
    :class:`Found` of its peak (its score: the choice's ``mean_confidence``), best first; a peak whose window or
    box is one instance with a kept one's (non-maximum suppression) is left out. The first is the selection's."""
    if count == 1:
        return [(function(found), found)]
    kept: list[tuple[Box, Found]] = []
    for choice in candidates(found):
        if len(kept) >= count:
            break
        peak = found if choice is found.choice else Found(found.pyramid, choice, found.pixels, found.evidence_by_span)
        if any(_same(peak.window, other.window) for _, other in kept):
            continue
        box = function(peak)
        if not any(_same(box, other) for other, _ in kept):
            kept.append((box, peak))
    return kept


def rule(name: str) -> Rule:
    """The rule called ``name``; ``ValueError`` naming the rules for another name."""
    try:
        return RULES[name]
    except KeyError:
        raise ValueError(f"unknown box {name!r}; use one of {', '.join(RULES)}") from None


def box(name: str, found: Found) -> Box:
    """The box of rule ``name`` for ``found``."""
    return rule(name).function(found)
