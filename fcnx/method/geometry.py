"""Pure geometry of FCNs and image pyramids: integers and floats only, no framework.

Conventions: sizes are ``(height, width)``; heatmap cell ``(i, j)`` is row ``i``, column ``j``;
a window or box is ``(x, y, w, h)`` in pixels of the image it refers to.
"""

from __future__ import annotations

import math

#: a box in image pixels as ``(x, y, width, height)``, x/y of its top-left corner
XYWH = tuple[float, float, float, float]


def w_min(d: int, stride: int, offset: int) -> int:
    """Smallest input side whose final feature map has side ``d`` (``stride * d + offset``)."""
    if d < 1:
        raise ValueError(f"pooled size must be >= 1, got {d}")
    return stride * d + offset


def pool_size(w: int, stride: int, offset: int) -> int:
    """Side of the final feature map for an input side ``w``: ``floor((w - offset) / stride)``."""
    d = (w - offset) // stride
    if d < 1:
        raise ValueError(f"input side {w} is below the smallest size {w_min(1, stride, offset)}")
    return d


def heatmap_side(side: int, kernel: int, stride: int, offset: int) -> int:
    """Heatmap cells along ``side`` for an FCN pooled for input ``kernel`` (0 if side < its window)."""
    if side < w_min(1, stride, offset):
        return 0
    return max(0, pool_size(side, stride, offset) - pool_size(kernel, stride, offset) + 1)


def common_cells(side: int, kernel: int, stride: int) -> int:
    """Windows of ``kernel`` pixels at ``stride`` that fit in ``side``: the cells all nets share.

    Every net whose pool size ``D`` was taken at ``kernel`` has at least this many cells,
    because ``kernel`` lies in ``[W_min(D), W_min(D) + stride - 1]``.
    """
    return max(0, (side - kernel) // stride + 1)


def cell_window(index: int, kernel: int, stride: int) -> tuple[int, int]:
    """Pixel span ``[start, stop)`` of heatmap cell ``index`` along one axis of the scaled image."""
    start = stride * index
    return start, start + kernel


def formula_text(stride: int, offset: int) -> str:
    """The receptive-size formula as text: ``32D``, ``32D+43``, ``32D-25``."""
    return f"{stride}D" + (f"{offset:+d}" if offset else "")


#: the paper's pyramid: each level ``DEFAULT_STEP`` times the one before, up to ``DEFAULT_MAX_SCALE`` times the first
DEFAULT_STEP = 1.2
DEFAULT_MAX_SCALE = 3.0
#: the paper's common kernel: every net trained and convolutionalized at this input side
DEFAULT_KERNEL = 299

#: the most levels an image pyramid may have (the default step 1.2 up to 3 times the first level gives 7)
MAX_LEVELS = 100


def pyramid_levels(step: float, max_scale: float) -> int:
    """Number of levels of a pyramid growing by ``step`` up to ``max_scale`` times its first level.

    Raises ``ValueError`` for a step that is not a finite number above 1, a maximum scale that is
    not a finite number of at least 1, or more than :data:`MAX_LEVELS` levels.
    """
    if not math.isfinite(step) or step <= 1.0:
        raise ValueError(f"the scale step must be a finite number > 1, got {step}")
    if not math.isfinite(max_scale) or max_scale < 1.0:
        raise ValueError(f"the maximum scale must be a finite number >= 1, got {max_scale}")
    count = math.floor(math.log(max_scale) / math.log(step) + 1e-9) + 1
    if count > MAX_LEVELS:
        raise ValueError(
            f"a scale step of {step} up to {max_scale} times the first level gives {count} pyramid levels; "
            f"at most {MAX_LEVELS} are allowed"
        )
    return count


def pyramid_scales(
    height: int, width: int, kernel: int, step: float = DEFAULT_STEP, max_scale: float = DEFAULT_MAX_SCALE
) -> list[float]:
    """Scale factors of the image pyramid (:func:`pyramid_levels` of them).

    The first scale makes the short side equal ``kernel`` (images smaller than the kernel are
    upscaled); each next one is ``step`` times larger, up to ``max_scale`` times the first.
    """
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    count = pyramid_levels(step, max_scale)
    first = kernel / min(height, width)
    return [first * step**k for k in range(count)]


#: ``max_scale="auto"`` (``--max-scale auto``): the pyramid for small objects, see :func:`auto_scales`
AUTO = "auto"
#: ... goes on until the kernel window is this share of the image's short side (the largest scale is its inverse) ...
AUTO_WINDOW = 0.1
#: ... but never to a level whose short side is more than this many times the decoded image's (a window of at
#: least kernel / 8 image pixels: 28 at kernel 224) ...
AUTO_UPSAMPLE = 8.0
#: ... nor beyond this many pixels summed over all levels (the default pyramid at kernel 224: 1.5 to 2 Mpixels)
AUTO_BUDGET = 32_000_000


def largest_scale(max_scale: float | str) -> float:
    """The largest scale (relative to the first level) a ``max_scale`` of a number or ``"auto"`` may reach."""
    if isinstance(max_scale, str):
        if max_scale != AUTO:
            raise ValueError(f"the maximum scale must be a number >= 1 or {AUTO!r}, got {max_scale!r}")
        return 1.0 / AUTO_WINDOW
    return float(max_scale)


def auto_scales(
    height: int, width: int, kernel: int, step: float, decoded_side: int, budget: int = AUTO_BUDGET
) -> list[float]:
    """:func:`pyramid_scales` up to the scale where the kernel window is :data:`AUTO_WINDOW` of the short side,
    stopping before the first level whose short side exceeds :data:`AUTO_UPSAMPLE` times ``decoded_side``
    (the decoded image's short side) or whose pixels would take the levels' sum over ``budget``.

    The first level is always kept (small images are upscaled to the kernel as with a fixed maximum scale).
    """
    scales: list[float] = []
    total = 0
    for scale in pyramid_scales(height, width, kernel, step, largest_scale(AUTO)):
        rows, cols = scaled_size(height, width, scale, kernel)
        if scales and (min(rows, cols) > AUTO_UPSAMPLE * decoded_side or total + rows * cols > budget):
            break
        scales.append(scale)
        total += rows * cols
    return scales


def scaled_size(height: int, width: int, scale: float, kernel: int) -> tuple[int, int]:
    """Image size at ``scale``, rounded, never below ``kernel`` on either side."""
    return max(kernel, round(height * scale)), max(kernel, round(width * scale))


def cell_to_box(
    cell: tuple[int, int],
    image_size: tuple[int, int],
    scaled: tuple[int, int],
    kernel: int,
    stride: int,
) -> XYWH:
    """Box ``(x, y, w, h)`` in original-image pixels of heatmap ``cell`` at a pyramid level.

    ``image_size`` is the original ``(height, width)``, ``scaled`` the size it was resized to.
    Per axis: vertex = stride * index / scale, edge = kernel / scale (the paper's eq. 2 and 3,
    with the exact per-axis scale that rounding produced), clipped to the image.
    """
    (i, j), (height, width) = cell, image_size
    sy, sx = scaled[0] / height, scaled[1] / width
    y0, y1 = (v / sy for v in cell_window(i, kernel, stride))
    x0, x1 = (v / sx for v in cell_window(j, kernel, stride))
    x0, y0 = max(0.0, x0), max(0.0, y0)
    x1, y1 = min(float(width), x1), min(float(height), y1)
    return x0, y0, x1 - x0, y1 - y0


def box_to_cell(
    box: XYWH,
    image_size: tuple[int, int],
    scaled: tuple[int, int],
    stride: int,
) -> tuple[int, int]:
    """The heatmap cell a :func:`cell_to_box` box came from (its vertex is never clipped)."""
    (x, y), (height, width) = box[:2], image_size
    return round(y * scaled[0] / height / stride), round(x * scaled[1] / width / stride)


def pixel_box(box: XYWH, image_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Integer corners ``(x1, y1, x2, y2)`` of a box, rounded half up, inside the image, at least one pixel wide."""
    height, width = image_size
    x, y, w, h = box

    def clamp(v: float, hi: int) -> int:
        return min(hi, max(0, math.floor(v + 0.5)))

    x1, y1 = min(clamp(x, width), width - 1), min(clamp(y, height), height - 1)
    return x1, y1, max(x1 + 1, clamp(x + w, width)), max(y1 + 1, clamp(y + h, height))
