"""Benchmark metrics (numpy only): box IoU and MaxBoxAccV2-style accuracy, box baselines,
mislabel precision/recall, top-k accuracy.

Boxes are ``(x, y, w, h)`` in pixels; arrays of boxes are ``N x 4``; image sizes are ``(height, width)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

#: IoU thresholds of MaxBoxAccV2 (Choe et al., 2020)
IOU_THRESHOLDS = (0.3, 0.5, 0.7)


def box_iou(pred: np.typing.ArrayLike, truth: np.typing.ArrayLike) -> np.ndarray:
    """Element-wise intersection over union of two ``N x 4`` (or ``4``) arrays of ``(x, y, w, h)`` boxes.

    Boxes of zero area that do not overlap score 0.
    """
    a = np.asarray(pred, dtype=np.float64)
    b = np.asarray(truth, dtype=np.float64)
    if a.shape[-1] != 4 or b.shape[-1] != 4:
        raise ValueError(f"boxes need 4 numbers (x, y, w, h), got shapes {a.shape} and {b.shape}")
    if np.any(a[..., 2:] < 0) or np.any(b[..., 2:] < 0):
        raise ValueError("box width and height must be >= 0")
    iw = np.clip(np.minimum(a[..., 0] + a[..., 2], b[..., 0] + b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 1] + a[..., 3], b[..., 1] + b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


#: a crop "keeps the object" when at least this share of the true box lies inside it
KEEPS = 0.9


def box_coverage(pred: np.typing.ArrayLike, truth: np.typing.ArrayLike) -> np.ndarray:
    """Element-wise share of each true box's area inside the predicted box (``N x 4`` or ``4``; 0 for a true box of no area)."""
    a = np.asarray(pred, dtype=np.float64)
    b = np.asarray(truth, dtype=np.float64)
    iw = np.clip(np.minimum(a[..., 0] + a[..., 2], b[..., 0] + b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 1] + a[..., 3], b[..., 1] + b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    area = b[..., 2] * b[..., 3]
    return np.divide(iw * ih, area, out=np.zeros_like(area), where=area > 0)


def mean_over_thresholds(at: dict[float, float]) -> float:
    """MaxBoxAccV2's averaging: the mean of the accuracies at IoU 0.3, 0.5 and 0.7."""
    return float(np.mean([at[t] for t in IOU_THRESHOLDS]))


@dataclass(frozen=True)
class BoxAccuracy:
    """Localization scores of a set of predicted boxes, all as fractions in [0, 1]."""

    mean_iou: float
    at: dict[float, float]  # IoU threshold -> share of boxes with IoU >= threshold
    count: int
    coverage: float | None = None  # mean share of the true box inside the predicted one
    keeps: float | None = None  # share of predicted boxes holding >= KEEPS of their true box

    @property
    def maxboxacc(self) -> float:
        """Mean of the shares at IoU 0.3, 0.5 and 0.7 (MaxBoxAccV2's averaging, for boxes)."""
        return mean_over_thresholds(self.at)

    def as_dict(self) -> dict[str, float]:
        """Flat ``name -> value`` for reports: ``mean_iou``, ``acc@0.3`` ... ``maxboxacc``, ``count``, and where
        measured ``coverage`` and ``keeps`` (the share keeping >= :data:`KEEPS` of the object)."""
        out = {
            "mean_iou": self.mean_iou,
            **{f"acc@{t}": v for t, v in self.at.items()},
            "maxboxacc": self.maxboxacc,
            "count": self.count,
        }
        if self.coverage is not None and self.keeps is not None:
            out |= {"coverage": self.coverage, "keeps": self.keeps}
        return out


def box_accuracy(
    pred: np.typing.ArrayLike, truth: np.typing.ArrayLike, thresholds: Sequence[float] = IOU_THRESHOLDS
) -> BoxAccuracy:
    """Mean IoU, the share of predicted boxes reaching each IoU threshold, the mean coverage of the true boxes
    (:func:`box_coverage`) and the share keeping >= :data:`KEEPS` of them (one prediction per true box)."""
    pred, truth = np.reshape(pred, (-1, 4)), np.reshape(truth, (-1, 4))
    ious = box_iou(pred, truth)
    if ious.size == 0:
        raise ValueError("no boxes to score")
    cover = box_coverage(pred, truth)
    return BoxAccuracy(
        mean_iou=float(ious.mean()),
        at={float(t): float(np.mean(ious >= t)) for t in thresholds},
        count=int(ious.size),
        coverage=float(cover.mean()),
        keeps=float(np.mean(cover >= KEEPS)),
    )


def _sides(box_sides: np.typing.ArrayLike, n: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(box_sides, dtype=np.float64), (n, 2))


def centred_boxes(image_sizes: np.typing.ArrayLike, box_sides: np.typing.ArrayLike) -> np.ndarray:
    """Boxes of ``box_sides`` ``(w, h)`` (one pair, or one per image) centred in images of ``(height, width)``.

    Sides larger than the image are clipped to it.
    """
    sizes = np.reshape(np.asarray(image_sizes, dtype=np.float64), (-1, 2))
    wh = np.minimum(_sides(box_sides, len(sizes)), sizes[:, ::-1])
    xy = (sizes[:, ::-1] - wh) / 2
    return np.concatenate([xy, wh], axis=1)


def random_boxes(image_sizes: np.typing.ArrayLike, box_sides: np.typing.ArrayLike, seed: int = 0) -> np.ndarray:
    """Boxes of ``box_sides`` ``(w, h)`` placed uniformly at random inside each image (seeded)."""
    sizes = np.reshape(np.asarray(image_sizes, dtype=np.float64), (-1, 2))
    wh = np.minimum(_sides(box_sides, len(sizes)), sizes[:, ::-1])
    xy = np.random.default_rng(seed).random((len(sizes), 2)) * (sizes[:, ::-1] - wh)
    return np.concatenate([xy, wh], axis=1)


@dataclass(frozen=True)
class Detection:
    """How well a suspect list matches the planted mislabels."""

    precision: float  # share of suspects that were planted (0 when there are no suspects)
    recall: float  # share of planted mislabels among the suspects (1 when none were planted)
    found: int
    suspects: int
    planted: int


def detection_scores(suspects: Iterable[str], planted: Iterable[str]) -> Detection:
    """Precision and recall of the ``suspects`` (sample ids) against the ``planted`` mislabels."""
    s, p = set(suspects), set(planted)
    found = len(s & p)
    return Detection(
        precision=found / len(s) if s else 0.0,
        recall=found / len(p) if p else 1.0,
        found=found,
        suspects=len(s),
        planted=len(p),
    )


def precision_at_k(ranked: Sequence[str], planted: Iterable[str], k: int) -> float:
    """Share of the first ``k`` of ``ranked`` (most suspect first) that are ``planted`` (a list shorter than ``k``
    counts its missing places as misses)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    p = set(planted)
    return sum(1 for sample in ranked[:k] if sample in p) / k


def average_precision(ranked: Sequence[str], planted: Iterable[str]) -> float:
    """Average precision of a ranking (most suspect first): the mean over the ``planted`` samples of the precision
    at the rank where each is listed; a planted sample the ranking does not list adds 0."""
    p = set(planted)
    if not p:
        raise ValueError("no planted samples to rank")
    found, total = 0, 0.0
    for rank, sample in enumerate(ranked, 1):
        if sample in p:
            found += 1
            total += found / rank
    return total / len(p)


def top_k_accuracy(scores: np.typing.ArrayLike, labels: np.typing.ArrayLike, k: int = 1) -> float:
    """Share of rows of ``scores`` (``N x C``) whose ``k`` highest entries include the row's label.

    Ties are broken towards the lower class index, as ``argmax`` does.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if s.ndim != 2 or y.shape != (s.shape[0],):
        raise ValueError(f"need N x C scores and N labels, got {s.shape} and {y.shape}")
    if not 1 <= k <= s.shape[1]:
        raise ValueError(f"k must be in [1, {s.shape[1]}], got {k}")
    if s.shape[0] == 0:
        raise ValueError("no samples to score")
    top = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(top == y[:, None], axis=1)))


#: score-map thresholds of wsolevaluation (``cam_curve_interval`` 0.01)
MAP_THRESHOLDS = tuple(np.arange(0, 1, 0.01).tolist())


def normalize_map(heat: np.typing.ArrayLike) -> np.ndarray:
    """A score map rescaled to [0, 1] by its minimum and maximum (wsolevaluation's ``normalize_scoremap``); flat: 0."""
    h = np.asarray(heat, dtype=np.float64)
    span = h.max() - h.min()
    return (h - h.min()) / span if span > 0 else np.zeros_like(h)


def map_boxes(heat: np.ndarray, threshold: float) -> np.ndarray:
    """wsolevaluation's boxes of a [0, 1] map at one threshold, as ``(x, y, w, h)`` (``K x 4``).

    The map is quantized to 0..255; pixels above ``int(threshold * max)`` form regions
    (8-neighbours); a region of columns ``a .. b`` gives the inclusive span ``a .. min(b + 1, W - 1)``
    (OpenCV's bounding rectangle read as inclusive corners, as wsolevaluation does), so ``w`` is
    that span's pixel count. No region: the one-pixel box at the origin.
    """
    from scipy import ndimage

    image = (np.asarray(heat) * 255).astype(np.uint8)
    height, width = image.shape
    labels, count = ndimage.label(image > int(threshold * image.max()), structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        return np.array([[0.0, 0.0, 1.0, 1.0]])
    boxes = []
    for rows, cols in ndimage.find_objects(labels):
        x0, y0 = cols.start, rows.start
        x1, y1 = min(cols.stop, width - 1), min(rows.stop, height - 1)
        boxes.append((x0, y0, x1 - x0 + 1, y1 - y0 + 1))
    return np.array(boxes, dtype=np.float64)


@dataclass(frozen=True)
class MapAccuracy:
    """MaxBoxAccV2 of score maps: per IoU threshold the best map threshold and its accuracy."""

    at: dict[float, float]  # IoU threshold -> accuracy at the best map threshold
    best_threshold: dict[float, float]  # IoU threshold -> that map threshold
    count: int

    @property
    def maxboxacc(self) -> float:
        return mean_over_thresholds(self.at)

    def as_dict(self) -> dict[str, float]:
        return {
            **{f"acc@{t}": v for t, v in self.at.items()},
            **{f"threshold@{t}": v for t, v in self.best_threshold.items()},
            "maxboxacc": self.maxboxacc,
            "count": self.count,
        }


def maxboxacc_v2(
    maps: Iterable[np.ndarray], truth: np.typing.ArrayLike, thresholds: Sequence[float] = MAP_THRESHOLDS
) -> MapAccuracy:
    """MaxBoxAccV2 (Choe et al., 2020; wsolevaluation with ``multi_contour_eval``) of [0, 1] score maps.

    For each map threshold every region's box (:func:`map_boxes`) is tried and the best IoU with
    the image's true box ``(x, y, w, h)`` kept; per IoU threshold 0.3/0.5/0.7 the accuracy at the
    best map threshold; MaxBoxAccV2 is their mean.
    """
    true = np.reshape(np.asarray(truth, dtype=np.float64), (-1, 4))
    best = []
    for heat, box in zip(maps, true, strict=True):
        best.append([float(box_iou(map_boxes(heat, t), box[None]).max()) for t in thresholds])
    if not best:
        raise ValueError("no maps to score")
    ious = np.array(best)  # images x thresholds
    at, where = {}, {}
    for t in IOU_THRESHOLDS:
        accuracy = (ious >= t).mean(axis=0)
        k = int(np.argmax(accuracy))
        at[float(t)], where[float(t)] = float(accuracy[k]), float(thresholds[k])
    return MapAccuracy(at=at, best_threshold=where, count=len(best))
