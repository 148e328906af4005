"""The fitted box of ``fcnx crop --box fitted``: the ensemble's tight box snapped to the object's pixels.

The tight box (:mod:`fcnx.method.evidence`) follows the nets' evidence, which is no finer than their
feature cells. The fitted box refines it with the image itself: GrabCut (Rother et al., 2004; OpenCV's
``cv2.grabCut``), a colour model of object and background solved by graph cut, seeded by the ensemble
as weakly-supervised segmentation seeds boxes ("Simple Does It", Khoreva et al., 2017):

- outside the tight box grown by :data:`MARGIN` of its sides on each edge: sure background;
- the ring between that and the tight box: probable background;
- the tight box: probable object; where its object map comes from the nets' class maps, the pixels at or
  above :data:`SURE` of its peak are sure object (the windows' evidence is too coarse to be sure of);
- after :data:`ITERATIONS` rounds, the object's 4-connected regions that overlap the tight box (each with at
  least :data:`KEEP` of the most overlapping one's pixels there) give the fitted box.

The image is worked on at a long side of at most :data:`SIDE` pixels. OpenCV's random seed is set before
each fit, so the box of an image is always the same. The tight box is returned unchanged where GrabCut
has no background to learn from (a tight box over the whole image) or finds no object. Needs OpenCV
(``opencv-python-headless``, in the core install since the default box, ``fitted-object``, fits too).
Measured in docs/crop.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from fcnx.errors import UsageError
from fcnx.method.evidence import Tight

#: the ring of probable background around the tight box, as a share of its sides on each edge
MARGIN = 0.25
#: GrabCut's rounds (colour models re-estimated, graph cut again)
ITERATIONS = 3
#: object-map pixels at or above this share of its peak are sure object (class-map evidence only)
SURE = 0.8
#: an object region counts when it has at least this share of the most overlapping region's pixels in the box
KEEP = 0.05
#: the long side (pixels) an image is fitted at; the box is given in the image's pixels
SIDE = 256

Box = tuple[float, float, float, float]

#: GrabCut's labels (OpenCV's ``GC_BGD``, ``GC_FGD``, ``GC_PR_BGD``, ``GC_PR_FGD``)
BACKGROUND, OBJECT, PROBABLE_BACKGROUND, PROBABLE_OBJECT = 0, 1, 2, 3


def opencv() -> Any:
    """The ``cv2`` module, or a :class:`~fcnx.errors.UsageError` (parameter ``box``) saying how to install it."""
    try:
        import cv2
    except ImportError:
        raise UsageError(
            "the fitted box needs OpenCV: pip install 'fcnx[fit]' (opencv-python-headless)", parameter="box"
        ) from None
    return cv2


def _bounds(box: Box, fx: float, fy: float, width: int, height: int) -> tuple[int, int, int, int]:
    """``box`` scaled by ``(fx, fy)`` as whole-pixel corners ``(x0, y0, x1, y1)`` covering it, clipped."""
    x, y, w, h = box
    x0, y0 = max(0, int(np.floor(x * fx))), max(0, int(np.floor(y * fy)))
    x1, y1 = min(width, int(np.ceil((x + w) * fx))), min(height, int(np.ceil((y + h) * fy)))
    return x0, y0, x1, y1


def seeds(
    shape: tuple[int, int], box: tuple[int, int, int, int], sure: np.ndarray | None, margin: float = MARGIN
) -> np.ndarray:
    """GrabCut's initial labels (:data:`BACKGROUND` ...) of an image of ``shape`` for the pixel corners ``box``:
    sure background beyond ``box`` grown by ``margin`` of its sides, probable background in that ring, probable
    object in ``box``, and sure object where ``sure`` (a bool map of ``shape``) is set inside ``box``."""
    height, width = shape
    x0, y0, x1, y1 = box
    gx, gy = margin * (x1 - x0), margin * (y1 - y0)
    ox0, oy0 = max(0, int(np.floor(x0 - gx))), max(0, int(np.floor(y0 - gy)))
    ox1, oy1 = min(width, int(np.ceil(x1 + gx))), min(height, int(np.ceil(y1 + gy)))
    labels = np.full(shape, BACKGROUND, dtype=np.uint8)
    labels[oy0:oy1, ox0:ox1] = PROBABLE_BACKGROUND
    labels[y0:y1, x0:x1] = PROBABLE_OBJECT
    if sure is not None:
        inside = np.zeros(shape, dtype=bool)
        inside[y0:y1, x0:x1] = True
        labels[sure & inside] = OBJECT
    return labels


def object_box(
    foreground: np.ndarray, box: tuple[int, int, int, int], keep: float = KEEP
) -> tuple[int, int, int, int] | None:
    """The pixel corners of the union of ``foreground``'s 4-connected regions that overlap ``box`` by at least
    ``keep`` of the most overlapping region's pixels there; ``None`` when no region overlaps it."""
    labels, count = ndimage.label(foreground)
    x0, y0, x1, y1 = box
    inside = np.bincount(labels[y0:y1, x0:x1].ravel(), minlength=count + 1)[1:]
    if count == 0 or inside.max() == 0:
        return None
    kept = np.isin(labels, 1 + np.flatnonzero(inside >= keep * inside.max()))
    rows, cols = np.nonzero(kept)
    return int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1


def fit_box(
    pixels: np.ndarray,
    size: tuple[int, int],
    box: Box,
    heat: np.ndarray | None = None,
    *,
    side: int = SIDE,
) -> Box:
    """The fitted box ``(x, y, w, h)`` in pixels of an image of upright ``size`` ``(height, width)``.

    ``pixels``: the image (``H' x W' x 3`` uint8 RGB, any size of the same aspect, e.g. decoded at reduced
    size); ``box``: the tight box in pixels of ``size``; ``heat``: the object map in [0, 1] (any size of the
    image's aspect) whose pixels at or above :data:`SURE` of its peak are sure object, or ``None``; ``side``:
    the long side (pixels) to fit at.
    """
    cv2 = opencv()
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise ValueError(f"expected H x W x 3 uint8 pixels, got {pixels.shape} {pixels.dtype}")
    factor = min(1.0, side / max(pixels.shape[:2]))
    work = (max(1, round(pixels.shape[0] * factor)), max(1, round(pixels.shape[1] * factor)))
    image = np.ascontiguousarray(pixels[:, :, ::-1])  # OpenCV's BGR
    if work != pixels.shape[:2]:
        image = cv2.resize(image, (work[1], work[0]), interpolation=cv2.INTER_AREA)
    fy, fx = work[0] / size[0], work[1] / size[1]
    corners = _bounds(box, fx, fy, work[1], work[0])
    if corners[2] - corners[0] < 2 or corners[3] - corners[1] < 2:
        return box
    sure = None
    if heat is not None and heat.max() > 0:
        scaled = cv2.resize(np.asarray(heat, dtype=np.float32), (work[1], work[0]), interpolation=cv2.INTER_LINEAR)
        sure = scaled >= SURE * scaled.max()
    labels = seeds(work, corners, sure)
    if not np.isin(labels, (BACKGROUND, PROBABLE_BACKGROUND)).any():  # no background to learn from
        return box
    cv2.setRNGSeed(0)  # GrabCut's first colour models come from k-means with OpenCV's random generator
    background, foreground = np.zeros((1, 65)), np.zeros((1, 65))
    try:
        cv2.grabCut(image, labels, None, background, foreground, ITERATIONS, cv2.GC_INIT_WITH_MASK)
    except cv2.error:  # a model with too few distinct colours (a flat image)
        return box
    found = object_box(np.isin(labels, (OBJECT, PROBABLE_OBJECT)), corners)
    if found is None:
        return box
    x0, y0, x1, y1 = found
    return x0 / fx, y0 / fy, (x1 - x0) / fx, (y1 - y0) / fy


def fit_tight(pixels: np.ndarray, size: tuple[int, int], tight: Tight, box: Box | None = None) -> Box:
    """:func:`fit_box` of a :class:`~fcnx.method.evidence.Tight`'s box (or of ``box``, e.g. a box grown from it):
    its object map seeds sure object only where it is the class maps' evidence (``tight.whole``); the windows'
    evidence is too coarse to be sure of."""
    return fit_box(pixels, size, tight.box if box is None else box, tight.object_map() if tight.whole else None)
