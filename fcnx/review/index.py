"""The images of a ``fcnx crop`` or ``fcnx suspects`` OUTDIR, indexed once for review: what each shows, how to
filter and sort them, and a page of them in a few milliseconds whatever their number.

A crop OUTDIR gives one :class:`Item` per image of ``boxes.jsonl`` (its records for several categories are
its guesses); a suspects OUTDIR one per suspect of ``suspects.json``; an OUTDIR holding both gives the crop's
images with their suspect signal. Lines that are not whole records are skipped and named in ``warnings``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fcnx.errors import UsageError
from fcnx.io.files import read_class_list, read_regular
from fcnx.io.journal import record_problem
from fcnx.jobs.outputs import JOURNAL
from fcnx.jobs.suspects import OUTPUTS as SUSPECTS_OUTPUTS

SUSPECTS = SUSPECTS_OUTPUTS[1]
Box = tuple[float, float, float, float]

#: decision states of an image: code -> name (the code is what :attr:`Index.state` holds)
STATES = ("undecided", "accepted", "rejected", "relabelled")
#: a verdict's action -> its state code
STATE_OF = {None: 0, "accept": 1, "reject": 2, "relabel": 3}
#: the ``state`` filter: name -> the state codes it keeps (``disputed`` is :attr:`Index.disputed`)
STATE_FILTERS = {
    "all": (0, 1, 2, 3),
    "undecided": (0,),
    "decided": (1, 2, 3),
    "accepted": (1,),
    "rejected": (2,),
    "relabelled": (3,),
    "disputed": (0, 1, 2, 3),
}
#: sort orders: name -> what it means (every order ends by the run's own order)
SORTS = {
    "run": "the run's order",
    "suspect": "most suspect first (the graded gap, else the other class's confidence)",
    "confidence": "least confident first",
    "confidence-desc": "most confident first",
    "class": "by label, then the run's order",
    "file": "by file name",
}
#: images per page
PAGE = 50


@dataclass
class Item:
    """One image to review: its key (``path`` as the run names it), what the run found, and the suspect signal."""

    index: int
    path: str
    file: str
    label: str | None
    size: tuple[int, int] | None = None  # upright (width, height), when the run recorded it
    box: Box | None = None
    box_kind: str = "square"
    #: other box kinds shown as overlays: kind -> box
    overlays: dict[str, Box] = field(default_factory=dict)
    #: the ensemble's guesses, best first: (class, mean confidence, votes / nets)
    guesses: list[tuple[str, float, str]] = field(default_factory=list)
    found: bool | None = None
    confidence: float | None = None
    heatmap: str | None = None  # relative to OUTDIR
    suspect: dict[str, Any] | None = None

    @property
    def score(self) -> float | None:
        """The suspect score: the graded gap, else the other class's mean confidence (``None``: not a suspect)."""
        if self.suspect is None:
            return None
        gap = self.suspect.get("gap")
        return float(gap) if gap is not None else float(self.suspect["confidence"])

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "file": self.file,
            "label": self.label,
            "size": self.size,
            "box": self.box,
            "box_kind": self.box_kind,
            "overlays": self.overlays,
            "guesses": [{"class": c, "score": s, "votes": v} for c, s, v in self.guesses],
            "found": self.found,
            "confidence": self.confidence,
            "heatmap": self.heatmap is not None,
            "suspect": self.suspect,
            "score": self.score,
        }


@dataclass(frozen=True)
class Query:
    """What a page shows: a sort order (:data:`SORTS`), a state filter (:data:`STATE_FILTERS`), one class
    (``None``: all), only images whose label was not found."""

    sort: str = "run"
    state: str = "all"
    label: str | None = None
    not_found: bool = False

    def __post_init__(self) -> None:
        if self.sort not in SORTS:
            raise UsageError(f"unknown sort {self.sort!r}; use one of {', '.join(SORTS)}")
        if self.state not in STATE_FILTERS:
            raise UsageError(f"unknown state {self.state!r}; use one of {', '.join(STATE_FILTERS)}")


class Index:
    """The items of one OUTDIR, with arrays to filter and sort them (:meth:`select`) and their decision states."""

    def __init__(self, outdir: Path, items: list[Item], classes: list[str], kind: str, warnings: list[str]) -> None:
        self.outdir, self.items, self.classes, self.kind, self.warnings = outdir, items, classes, kind, warnings
        self.by_path = {item.path: item.index for item in items}
        class_id = {name: k for k, name in enumerate(classes)}
        self.label_id = np.array([class_id.get(i.label, -1) if i.label else -1 for i in items], dtype=np.int32)
        self.not_found = np.array([i.found is False for i in items], dtype=bool)
        self.confidence = np.array([_number(i.confidence) for i in items], dtype=np.float64)
        self.score = np.array([_number(i.score) for i in items], dtype=np.float64)
        #: per item its :data:`STATES` code, kept up to date by the review session
        self.state = np.zeros(len(items), dtype=np.int8)
        #: per item whether reviewers' verdicts differ
        self.disputed = np.zeros(len(items), dtype=bool)
        #: raised by whoever changes ``state`` or ``disputed`` (what :meth:`select` last answered is then stale)
        self.version = 0
        self._orders: dict[str, np.ndarray] = {}
        self._last: tuple[tuple[Query, int], np.ndarray] | None = None

    def order(self, sort: str) -> np.ndarray:
        """Item indices in the order ``sort`` (computed once, then kept)."""
        if sort not in self._orders:
            n = np.arange(len(self.items))
            if sort == "run":
                order = n
            elif sort in ("suspect", "confidence", "confidence-desc"):
                values = {"suspect": -self.score, "confidence": self.confidence, "confidence-desc": -self.confidence}
                key = values[sort]
                order = np.lexsort((n, np.nan_to_num(key, nan=np.inf), np.isnan(key)))
            elif sort == "class":
                order = np.lexsort((n, self.label_id))
            else:
                order = np.array(sorted(n, key=lambda k: self.items[k].file), dtype=np.int64)
            self._orders[sort] = order
        return self._orders[sort]

    def select(self, query: Query) -> np.ndarray:
        """The indices of the items ``query`` keeps, in its order (the last answer is kept until ``version`` changes:
        paging through one query costs the slicing only)."""
        if self._last is not None and self._last[0] == (query, self.version):
            return self._last[1]
        wanted = np.zeros(len(STATES), dtype=bool)
        wanted[list(STATE_FILTERS[query.state])] = True
        keep = wanted[self.state]
        if query.state == "disputed":
            keep &= self.disputed
        if query.label is not None:
            if query.label not in self.classes:
                raise UsageError(f"unknown class {query.label!r}")
            keep &= self.label_id == self.classes.index(query.label)
        if query.not_found:
            keep &= self.not_found
        order = self.order(query.sort)
        selected: np.ndarray = order[keep[order]]
        self._last = ((query, self.version), selected)
        return selected

    def counts(self) -> dict[str, int]:
        """How many items are in each state, and disputed."""
        counts = np.bincount(self.state, minlength=len(STATES))
        return {**{name: int(counts[k]) for k, name in enumerate(STATES)}, "disputed": int(self.disputed.sum())}


def _number(value: float | None) -> float:
    return math.nan if value is None else float(value)


def open_index(outdir: Path, classes_file: Path | None = None) -> Index:
    """Index the crop or suspects run in ``outdir`` (a one-line :class:`UsageError` for anything else)."""
    if not outdir.is_dir():
        raise UsageError("is not a folder: give the OUTDIR of fcnx crop or fcnx suspects", outdir)
    crop, suspects = outdir / JOURNAL, outdir / SUSPECTS
    if not crop.is_file() and not suspects.is_file():
        raise UsageError(
            f"is neither an fcnx crop output ({JOURNAL}) nor an fcnx suspects output ({SUSPECTS}): nothing to review",
            outdir,
        )
    warnings: list[str] = []
    items: list[Item] = []
    if crop.is_file():
        items = _crop_items(crop, warnings)
    flagged = _suspects(suspects, warnings) if suspects.is_file() else {}
    by_path = {os.path.abspath(item.path): item for item in items}  # suspects name paths as --data gave them
    for path, row in flagged.items():
        item = by_path.get(os.path.abspath(path))
        if item is None:
            item = by_path[os.path.abspath(path)] = Item(len(items), path, path, row["label"] or None)
            item.box = _box(row)
            item.box_kind = "other class"
            items.append(item)
        item.suspect = {
            "other": row["other_category"],
            "votes": row["other_votes"],
            "confidence": row["other_mean_confidence"],
            "gap": row["gap"],
            "box": _box(row),
        }
        if not any(g[0] == row["other_category"] for g in item.guesses):
            item.guesses.append((row["other_category"], float(row["other_mean_confidence"]), f"{row['other_votes']}"))
            item.guesses.sort(key=lambda g: -g[1])
    kind = "crop" if crop.is_file() else "suspects"
    if crop.is_file() and flagged:
        kind = "crop + suspects"
    return Index(outdir, items, _classes(outdir, items, classes_file, warnings), kind, warnings)


def _crop_items(journal: Path, warnings: list[str]) -> list[Item]:
    """One item per image of a crop journal, read as a stream of lines (only one image's records parsed at a time);
    a later group of records for an image replaces an earlier one, a cut last line (a kill) is dropped."""
    try:
        data = read_regular(journal)
    except OSError as exc:
        raise UsageError(f"cannot read ({exc.strerror or exc})", journal) from None
    lines = data.split(b"\n")
    if not lines[-1]:
        lines.pop()  # the file ends with a newline
    items: list[Item] = []
    where: dict[str, int] = {}
    group: list[dict[str, Any]] = []

    def close_group() -> None:
        if group:
            item = _crop_item(group)
            item.index = where.setdefault(item.path, len(items))
            items[item.index : item.index + 1] = [item]
            group.clear()

    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except (ValueError, RecursionError):
            record = None
        if not isinstance(record, dict) and number == len(lines) and not data.endswith(b"\n"):
            warnings.append(f"{journal}:{number}: cut short (a killed run); skipped")
            break
        problem = record_problem(record if isinstance(record, dict) else None)
        if problem is not None:
            warnings.append(f"{journal}:{number}: not a crop record ({problem}); skipped")
            close_group()
            continue
        assert isinstance(record, dict)
        if group and record["path"] != group[0]["path"]:
            close_group()
        group.append(record)
    close_group()
    return items


def _crop_item(records: list[dict[str, Any]]) -> Item:
    """The item of one image's records (one per category)."""
    first = records[0]
    main = next((r for r in records if r["category"] == first["label"]), first)
    item = Item(0, first["path"], first["file"], first["label"], (first["width"], first["height"]))
    item.box = (main["x"], main["y"], main["w"], main["h"])
    item.box_kind = main.get("box_kind", "square")
    for kind in ("window", "tight", "fitted"):
        other = main.get(kind)
        if isinstance(other, list) and len(other) == 4 and tuple(other) != item.box and kind != item.box_kind:
            item.overlays[kind] = (other[0], other[1], other[2], other[3])
    item.guesses = sorted(
        ((r["category"], r["mean_confidence"], f"{r['votes']}/{r['nets']}") for r in records), key=lambda g: -g[1]
    )
    item.found, item.confidence, item.heatmap = main["found"], main["mean_confidence"], main["heatmap"]
    return item


_SUSPECT_FIELDS = {
    "path": str,
    "label": str,
    "other_category": str,
    "other_votes": int,
    "other_mean_confidence": (int, float),
    "x": (int, float),
    "y": (int, float),
    "w": (int, float),
    "h": (int, float),
}


def _suspects(path: Path, warnings: list[str]) -> dict[str, dict[str, Any]]:
    """The rows of ``suspects.json`` by image path (rows that are not whole are skipped and named)."""
    try:
        rows = json.loads(read_regular(path))["suspects"]
        if not isinstance(rows, list):
            raise TypeError("'suspects' is not a list")
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise UsageError(f"unreadable suspects file ({exc})", path) from None
    flagged = {}
    for number, row in enumerate(rows, 1):
        bad = next(
            (
                key
                for key, types in _SUSPECT_FIELDS.items()
                if not isinstance(row, dict) or not _fits(row.get(key), types)
            ),
            None,
        )
        gap = row.get("gap") if isinstance(row, dict) else None
        if bad is None and gap is not None and not _fits(gap, (int, float)):
            bad = "gap"
        if bad is not None:
            warnings.append(f"{path}: suspect {number} has no valid {bad!r}; skipped")
            continue
        flagged[row["path"]] = row
    return flagged


def _fits(value: Any, types: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return isinstance(value, types)


def _box(row: dict[str, Any]) -> Box:
    return (float(row["x"]), float(row["y"]), float(row["w"]), float(row["h"]))


def _classes(outdir: Path, items: Sequence[Item], given: Path | None, warnings: list[str]) -> list[str]:
    """The classes a reviewer can relabel to: ``given`` (``--classes``), else the dataset's ``meta/classes.txt``
    that crop copied into OUTDIR; then every label and guess the run names that these do not."""
    listed: list[str] = []
    if given is not None:
        listed = read_class_list(given)
    else:
        found = sorted([*outdir.glob("meta/classes.txt"), *outdir.glob("*/meta/classes.txt")])
        if found:
            try:
                listed = read_class_list(found[0])
            except UsageError as exc:
                warnings.append(f"{exc}; classes taken from the records")
    seen = set(listed)
    extra = sorted({name for item in items for name in (item.label, *(g[0] for g in item.guesses)) if name} - seen)
    return listed + extra
