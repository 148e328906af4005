"""The images of a ``fcnx crop`` or ``fcnx suspects`` OUTDIR, indexed for review: what each shows, how to
filter and sort them, and a page of them in a few milliseconds whatever their number.

A crop OUTDIR gives one :class:`Item` per image of ``boxes.jsonl`` (its records for several categories are
its guesses); a suspects OUTDIR one per suspect of ``suspects.json``; an OUTDIR holding both gives the crop's
images with their suspect signal. Lines that are not whole records are skipped and named in ``warnings``.
The index is a few arrays (:mod:`fcnx.io.review_index`, kept in OUTDIR by the run and between reviews); an image's
:class:`Item` is read from its own lines of ``boxes.jsonl`` when a page shows it.
"""

from __future__ import annotations

import bisect
import os
import stat
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from fcnx.errors import UsageError
from fcnx.io.files import read_class_list
from fcnx.io.record import BOXES, CropRecord
from fcnx.io.replayed import CODE
from fcnx.io.review_index import Columns, fresh
from fcnx.jobs.outdir.outputs import JOURNAL
from fcnx.jobs.suspects import OUTPUTS as SUSPECTS_OUTPUTS

SUSPECTS = SUSPECTS_OUTPUTS[1]
Box = tuple[float, float, float, float]

#: decision states of an image: code -> name (the code is what :attr:`Index.state` holds)
STATES = ("undecided", "accepted", "rejected", "relabelled")
#: a verdict's action -> its state code (as the replay of ``review.jsonl`` keeps it)
STATE_OF = CODE
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
    #: the ensemble's guesses, best first: (class, mean confidence, votes / nets): the categories the run scored
    #: the image for, at their boxes, and a suspect's other class
    guesses: list[tuple[str, float, str]] = field(default_factory=list)
    #: the ensemble's top classes of the whole image, as ``guesses`` (a crop record's optional ``guesses``)
    image_guesses: list[tuple[str, float, str]] = field(default_factory=list)
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
            "image_guesses": [{"class": c, "score": s, "votes": v} for c, s, v in self.image_guesses],
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

    def __init__(self, outdir: Path, columns: Columns, classes: list[str], journal: BinaryIO | None) -> None:
        self.outdir, self.columns, self.classes, self._journal = outdir, columns, classes, journal
        self.kind, self.warnings = columns.kind, columns.warnings
        class_id = np.array([classes.index(name) for name in columns.names] + [-1], dtype=np.int32)
        self.label_id = class_id[columns.label]  # -1 (no label) picks the last
        self.not_found, self.confidence, self.score = columns.not_found, columns.confidence, columns.score
        #: per item its :data:`STATES` code, kept up to date by the review session
        self.state = np.zeros(len(columns), dtype=np.int8)
        #: per item whether reviewers' verdicts differ
        self.disputed = np.zeros(len(columns), dtype=bool)
        #: raised by whoever changes ``state`` or ``disputed`` (what :meth:`select` last answered is then stale)
        self.version = 0
        self._orders: dict[str, np.ndarray] = {}
        self._last: tuple[tuple[Query, int], np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.columns)

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()

    def path(self, k: int) -> str:
        """Item ``k``'s key: its path as the run names it."""
        return self.columns.path(k)

    def find(self, path: str) -> int | None:
        """The number of the item whose key is ``path`` (``None``: the run has no such image)."""
        order = self.columns.path_order
        at = bisect.bisect_left(order, path, key=self.columns.path)
        return int(order[at]) if at < len(order) and self.columns.path(int(order[at])) == path else None

    def find_all(self, paths: Collection[str]) -> dict[str, int | None]:
        """:meth:`find` of each of ``paths`` (many of them: every path decoded once, instead of a search each)."""
        if len(paths) * 16 < len(self):
            return {path: self.find(path) for path in paths}
        where: dict[str, int] = {}
        for k in range(len(self)):
            where.setdefault(self.path(k), k)  # the first of equal paths, as :meth:`find`'s search
        return {path: where.get(path) for path in paths}

    def item(self, k: int) -> Item:
        """What item ``k`` shows, read from its lines of ``boxes.jsonl`` (a :class:`UsageError` if they are no
        longer the image's records: the file was rewritten in place while reviewing) and its suspect row."""
        columns, path = self.columns, self.path(k)
        start, end = int(columns.start[k]), int(columns.end[k])
        row = columns.suspect(k)
        if start < 0:
            assert row is not None
            item = Item(k, path, path, row["label"] or None, box=_box(row), box_kind="other class")
        else:
            assert self._journal is not None
            records = _records(os.pread(self._journal.fileno(), end - start, start))
            if not records or any(r.path != path for r in records):
                raise UsageError(f"changed while reviewing (the records of {path!r} moved): start fcnx review again",
                                 self.outdir / JOURNAL)  # fmt: skip
            item = _crop_item(k, records)
        if row is not None:
            item.suspect = {
                "other": row["other_category"],
                "votes": row["other_votes"],
                "confidence": row["other_mean_confidence"],
                "gap": row.get("gap"),
                "box": _box(row),
            }
            if not any(g[0] == row["other_category"] for g in item.guesses):
                item.guesses.append(
                    (row["other_category"], float(row["other_mean_confidence"]), f"{row['other_votes']}")
                )
                item.guesses.sort(key=lambda g: -g[1])
        return item

    def order(self, sort: str) -> np.ndarray:
        """Item indices in the order ``sort`` (computed once, then kept)."""
        if sort not in self._orders:
            n = np.arange(len(self))
            if sort == "run":
                order = n
            elif sort in ("suspect", "confidence", "confidence-desc"):
                values = {"suspect": -self.score, "confidence": self.confidence, "confidence-desc": -self.confidence}
                key = values[sort]
                order = np.lexsort((n, np.nan_to_num(key, nan=np.inf), np.isnan(key)))
            elif sort == "class":
                order = np.lexsort((n, self.label_id))
            else:
                order = self.columns.file_order
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


def open_index(outdir: Path, classes_file: Path | None = None) -> Index:
    """Index the crop or suspects run in ``outdir`` (a one-line :class:`UsageError` for anything else): the index
    kept in OUTDIR if it was built from the run's files as they are, else built anew (on top of the kept one
    when ``boxes.jsonl`` only grew) and kept."""
    if not outdir.is_dir():
        raise UsageError("is not a folder: give the OUTDIR of fcnx crop or fcnx suspects", outdir)
    crop, suspects = outdir / JOURNAL, outdir / SUSPECTS
    if not crop.is_file() and not suspects.is_file():
        raise UsageError(
            f"is neither an fcnx crop output ({JOURNAL}) nor an fcnx suspects output ({SUSPECTS}): nothing to review",
            outdir,
        )
    journal = _open_regular(crop) if crop.is_file() else None
    try:
        columns = fresh(outdir, journal, crop, suspects if suspects.is_file() else None)
    except OSError as exc:
        if journal is not None:
            journal.close()
        raise UsageError(f"cannot read ({exc.strerror or exc})", crop) from None
    except BaseException:
        if journal is not None:
            journal.close()
        raise
    return Index(outdir, columns, _classes(outdir, columns.names, classes_file, columns.warnings), journal)


def _open_regular(path: Path) -> BinaryIO:
    """``path`` opened to read, if it is a regular file (a FIFO would block)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise UsageError(f"cannot read ({exc.strerror or exc})", path) from None
    file = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        file.close()
        raise UsageError("cannot read (not a regular file)", path)
    return file


def _records(data: bytes) -> list[CropRecord]:
    """The crop records of ``data``'s lines (none if one is not a record)."""
    try:
        return [CropRecord.from_line(line) for line in data.split(b"\n") if line.strip()]
    except ValueError:
        return []


def _crop_item(k: int, records: list[CropRecord]) -> Item:
    """The item of one image's records (one per category)."""
    first = records[0]
    main = next((r for r in records if r.category == first.label), first)
    item = Item(k, first.path, first.file, first.label, (first.width, first.height))
    item.box = (main.x, main.y, main.w, main.h)
    item.box_kind = main.box_kind or "square"
    for kind in BOXES:
        other = getattr(main, kind)
        if other is not None and len(other) == 4 and other != item.box and kind != item.box_kind:
            item.overlays[kind] = other
    item.guesses = sorted(
        ((r.category, r.mean_confidence, f"{r.votes}/{r.nets}") for r in records), key=lambda g: -g[1]
    )
    item.image_guesses = [(c, p, f"{v}/{main.nets}") for c, p, v in main.guesses]
    item.found, item.confidence, item.heatmap = main.found, main.mean_confidence, main.heatmap
    return item


def _box(row: dict[str, Any]) -> Box:
    return (float(row["x"]), float(row["y"]), float(row["w"]), float(row["h"]))


def _classes(outdir: Path, names: Sequence[str], given: Path | None, warnings: list[str]) -> list[str]:
    """The classes a reviewer can relabel to: ``given`` (``--classes``), else the dataset's ``meta/classes.txt``
    that crop copied into OUTDIR; then every label and guess the run names (``names``) that these do not."""
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
    return listed + [name for name in names if name not in seen]
