"""Measuring a backbone's receptive-size formula from its feature-map sides, and caching what was measured.

Any framework's backbone can be measured: :func:`measure_formula` only needs a function from an
input side ``W`` to the side ``D`` of the final feature map (PyTorch plugins compute it on the meta
device, where shapes propagate without arithmetic). Measurements are kept as small JSON records in
``$FCNX_CACHE`` (default ``~/.cache/fcnx``), one file per model under a namespace that names the
library version, so a backbone is measured once per installed version.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fcnx.io.files import atomic_text, cache_dir
from fcnx.method import geometry

#: bump when what is measured or how changes: older records are measured again
PROBE_VERSION = 1
#: the FCN must reproduce the classifier's logits at the kernel to this (relative to logits of order one)
EXACT_TOLERANCE = 1e-4
#: the pooled sizes whose boundaries are verified after the formula is measured
CHECKED_D = (2, 3, 5, 8)
#: the largest input side tried while searching for a boundary
MAX_SIDE = 4096

#: input side ``W`` -> side ``D`` of the final feature map; may raise when ``W`` is too small to run
SideFn = Callable[[int], int]


class ProbeError(ValueError):
    """A backbone whose feature-map sides do not follow a formula ``W_min(D) = stride * D + offset``."""


#: characters of a failure's message quoted in a probe error
FAILURE_CHARS = 160


class _Sides:
    """``side_of`` with failures counted as zero cells, remembering why each side failed."""

    def __init__(self, side_of: SideFn) -> None:
        self.side_of = side_of
        self.failures: dict[int, str] = {}
        self.seen: dict[int, int] = {}

    def __call__(self, w: int) -> int:
        if w not in self.seen:
            try:
                self.seen[w] = int(self.side_of(w))
            except Exception as exc:  # too small to run, or runs at some sides only: reported by the caller
                text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                self.failures[w] = f"{type(exc).__name__}: {text}"[:FAILURE_CHARS]
                self.seen[w] = 0
        return self.seen[w]

    def w_min(self, d: int, lo: int) -> int:
        """The smallest side ``>= lo`` with at least ``d`` cells (sides are non-decreasing in ``W``)."""
        hi = max(lo, 32)
        while self(hi) < d:
            lo, hi = hi + 1, hi * 2
            if hi > MAX_SIDE:
                last = max(self.failures, default=None)
                if last is not None:
                    raise ProbeError(f"it runs at some input sides only, not at {last} ({self.failures[last]})")
                raise ProbeError(f"its feature map never reaches {d} cells below input side {MAX_SIDE}")
        while lo < hi:
            mid = (lo + hi) // 2
            if self(mid) >= d:
                hi = mid
            else:
                lo = mid + 1
        return lo


def measure_formula(side_of: SideFn) -> tuple[int, int]:
    """``(stride, offset)`` of a backbone whose final feature side at input side ``W`` is ``side_of(W)``.

    The boundaries of ``D = 2`` and ``3`` give the formula; for every ``D`` in :data:`CHECKED_D` the
    sides ``W_min(D) - 1``, ``W_min(D)``, ``W_min(D) + stride - 1`` and ``W_min(D) + stride`` must then
    give ``D - 1``, ``D``, ``D`` and ``D + 1`` cells, else :class:`ProbeError` (inputs too small for two
    cells may fail to run: a kernel is never that small).
    """
    sides = _Sides(side_of)
    first = sides.w_min(2, 1)
    stride = sides.w_min(3, first + 1) - first
    offset = first - 2 * stride
    for d in CHECKED_D:
        lo = geometry.w_min(d, stride, offset)
        for w, cells in ((lo - 1, d - 1), (lo, d), (lo + stride - 1, d), (lo + stride, d + 1)):
            got = sides(w)
            if w in sides.failures and cells >= 2:
                raise ProbeError(f"it runs at some input sides only, not at {w} ({sides.failures[w]})")
            if got != cells and w not in sides.failures:
                raise ProbeError(
                    f"its feature map does not follow W_min(D) = {geometry.formula_text(stride, offset)}: "
                    f"input side {w} gives {sides(w)} cells, not {cells}"
                )
    return stride, offset


def is_exact(max_abs_diff: float, scale: float) -> bool:
    """Whether an FCN that differs from its classifier by ``max_abs_diff`` on logits up to ``scale`` is exact."""
    return max_abs_diff <= EXACT_TOLERANCE * max(1.0, scale)


def _record_path(namespace: str, key: str) -> Path:
    return cache_dir() / namespace / f"{urllib.parse.quote(key, safe='')}.json"


def cached_record(namespace: str, key: str) -> dict[str, Any] | None:
    """The measurement of ``key`` kept under ``namespace``, or ``None`` when there is none (or it is stale)."""
    try:
        record = json.loads(_record_path(namespace, key).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("probe") == PROBE_VERSION else None


def measured(namespace: str, key: str, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The cached record of ``key``, else ``measure()``'s, stored (a cache that cannot be written is skipped)."""
    record = cached_record(namespace, key)
    if record is None:
        record = measure() | {"probe": PROBE_VERSION}
        try:
            atomic_text(_record_path(namespace, key), json.dumps(record, indent=1, sort_keys=True))
        except OSError:
            pass
    return record
