"""What the crop engine returns: a :class:`Box` per category, a :class:`CropResult` per image, or a
:class:`CropFailure` for an image that could not be read."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fcnx.io.decoding import Source
from fcnx.io.discovery import ImageItem


@dataclass(frozen=True)
class Box:
    """Where the ensemble finds one category in one image, in upright original-image pixels.

    ``x, y, w, h`` is the window of cell ``cell`` at pyramid level ``level`` (scale ``scale``),
    clipped to the image. ``votes``: nets whose top class at that cell is the category;
    ``confidence``: their probabilities of it summed; ``found``: some net voted for it at some
    cell of some level examined (``False`` suggests a wrong label). ``heatmap`` is the summed
    probability map at the chosen level (only when the cropper keeps heatmaps).

    ``kind`` says which box ``x, y, w, h`` is: ``"square"``, the paper's kernel ``window``,
    ``"tight"``, the ``tight`` box fitted to the ensemble's evidence (:mod:`fcnx.method.evidence`), or
    ``"fitted"``, the tight box ``fitted`` to the image's pixels (:mod:`fcnx.method.fitting`); the window
    and the tight box are always given, the fitted box only with that kind (else ``None``). ``evidence``
    is the found object's score map in [0, 1] (:meth:`fcnx.method.evidence.Tight.object_map`, at most
    :data:`~fcnx.method.evidence.MAX_SIDE` a side; only with heatmaps). ``instance``: the box's rank among its
    category's boxes (1: the selection's; further ones with ``instances`` > 1, :func:`fcnx.method.boxes.instances`),
    whose score is its ``mean_confidence``.
    """

    category: str
    category_index: int
    found: bool
    votes: int
    nets: int
    confidence: float
    scale: float
    level: int
    cell: tuple[int, int]
    scaled_size: tuple[int, int]
    x: float
    y: float
    w: float
    h: float
    net_scores: dict[str, float]
    net_votes: dict[str, bool]
    levels_examined: int
    stopped_early: bool
    heatmap: np.ndarray | None = field(default=None, repr=False, compare=False)
    kind: str = "square"
    window: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    tight: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    fitted: tuple[float, float, float, float] | None = None
    evidence: np.ndarray | None = field(default=None, repr=False, compare=False)
    instance: int = 1

    @property
    def mean_confidence(self) -> float:
        return self.confidence / self.nets

    @property
    def x1(self) -> float:
        return self.x

    @property
    def y1(self) -> float:
        return self.y

    @property
    def x2(self) -> float:
        return self.x + self.w

    @property
    def y2(self) -> float:
        return self.y + self.h


@dataclass(frozen=True)
class CropResult:
    """One image's boxes: ``size`` is its upright ``(height, width)``, ``scales`` the pyramid used.

    ``source`` identifies the file whose pixels gave the boxes (``None`` for an image given as pixels).
    ``guesses``: the ensemble's top classes of the whole image squashed to the kernel (as the nets were trained
    to see an image), best first: ``(class, probability averaged over the nets, votes)``, votes the nets whose
    top class it is.
    """

    item: ImageItem
    size: tuple[int, int]
    scales: tuple[float, ...]
    boxes: tuple[Box, ...]
    source: Source | None = None
    guesses: tuple[tuple[str, float, int], ...] = ()


@dataclass(frozen=True)
class CropFailure:
    """An image that could not be processed, with a one-line reason naming the file."""

    item: ImageItem
    error: str
