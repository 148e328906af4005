"""The review index's columns: per image of a crop or suspects OUTDIR, a few numbers in arrays, kept in
``OUTDIR/.fcnx-review-index`` so that ``fcnx review`` opens in milliseconds: written by the run itself at its end
(``fcnx crop``: :func:`indexed_records`, from the records it reads for ``boxes.csv``; ``fcnx suspects``:
:func:`keep_index`), else built by the first review (:func:`fresh`).

What an image shows is not kept here but read again when a page shows it: a crop image's records are a byte
range of ``boxes.jsonl`` (:attr:`Columns.start`, :attr:`Columns.end`), a suspect's row is kept as its JSON.
The arrays hold what filtering, sorting and finding an image by path need. The kept file is used only while
``boxes.jsonl`` and ``suspects.json`` are the files it was built from (size, modification and change times,
inode); when ``boxes.jsonl`` only grew (a crop run went on), the new lines are read on top of it; a kept file
that is cut, altered (its checksum) or from another version is rebuilt.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from fcnx.errors import FcnxError, UsageError
from fcnx.io.files import read_regular
from fcnx.io.journal import CropJournal
from fcnx.io.kept import read_kept, write_kept
from fcnx.io.record import Json, cut_warning, line_warning, parse_line, record_problem

#: the kept index inside OUTDIR
CACHE = ".fcnx-review-index"
_MAGIC = b"fcnx-review-index 1\n"
#: a path's text as bytes, losslessly (a file name that is not UTF-8 is kept as lone surrogates)
_CODEC = ("utf-8", "surrogatepass")

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


@dataclass
class Columns:
    """Per image (in review order: the crop run's images, then suspects it does not have) its arrays."""

    kind: str
    #: every class name the run's labels and guesses name, sorted
    names: list[str]
    warnings: list[str]
    #: texts per image, as bytes one after the other with where each starts (n + 1): the image's path as the
    #: run names it, its file name (relative to the dataset), its suspect row as JSON (empty: not a suspect)
    paths: np.ndarray
    path_at: np.ndarray
    files: np.ndarray
    file_at: np.ndarray
    suspects: np.ndarray
    suspect_at: np.ndarray
    #: item numbers in the order of their paths (to find a path by bisection), and of their file names
    path_order: np.ndarray
    file_order: np.ndarray
    #: the byte range of an image's records in ``boxes.jsonl`` (-1: a suspect the crop run does not have)
    start: np.ndarray
    end: np.ndarray
    #: the label's index in ``names`` (-1: none), whether no net found it, its confidence, the suspect score (NaN)
    label: np.ndarray
    not_found: np.ndarray
    confidence: np.ndarray
    score: np.ndarray
    #: the crop run's part: how many items, class names, warnings, where a scan of more lines resumes
    crop: dict[str, Any] = field(default_factory=dict)
    #: the files these columns were built from (:func:`source_key`)
    sources: dict[str, Any] = field(default_factory=dict)
    _paths: tuple[bytes, list[int]] | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.start)

    def path(self, k: int) -> str:
        if self._paths is None:  # as bytes and a list: a slice of them is a few times faster than of the arrays
            self._paths = (self.paths.tobytes(), self.path_at.tolist())
        data, at = self._paths
        return data[at[k] : at[k + 1]].decode(*_CODEC)

    def file(self, k: int) -> str:
        return _text(self.files, self.file_at, k)

    def suspect(self, k: int) -> dict[str, Any] | None:
        raw = _text(self.suspects, self.suspect_at, k)
        return json.loads(raw) if raw else None


def _text(blob: np.ndarray, at: np.ndarray, k: int) -> str:
    return bytes(blob[at[k] : at[k + 1]]).decode(*_CODEC)


_ARRAYS = [f.name for f in fields(Columns) if f.type == "np.ndarray"]
_TEXTS = {"paths": "path_at", "files": "file_at", "suspects": "suspect_at"}


# --------------------------------------------------------------------------- building


@dataclass
class _Builder:
    """The columns as lists while they are built: the crop scan, then the suspects' merge."""

    paths: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    start: list[int] = field(default_factory=list)
    end: list[int] = field(default_factory=list)
    label: list[str | None] = field(default_factory=list)
    not_found: list[bool] = field(default_factory=list)
    confidence: list[float] = field(default_factory=list)
    names: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)
    where: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of_crop(cls, kept: Columns) -> _Builder:
        """The crop run's part of ``kept`` columns, to scan more lines on top of it."""
        n = kept.crop["items"]
        paths = [kept.path(k) for k in range(n)]
        return cls(
            paths=paths,
            files=[kept.file(k) for k in range(n)],
            start=kept.start[:n].tolist(),
            end=kept.end[:n].tolist(),
            label=[None if i < 0 else kept.names[i] for i in kept.label[:n].tolist()],
            not_found=kept.not_found[:n].tolist(),
            confidence=kept.confidence[:n].tolist(),
            names=set(kept.crop["names"]),
            warnings=list(kept.crop["warnings"]),
            where={path: k for k, path in enumerate(paths)},
        )

    def add(self, path: str, file: str, label: str | None, span: tuple[int, int]) -> int:
        """The item of ``path`` (a new one, or the one it had: a later group of records replaces an earlier one)."""
        k = self.where.setdefault(path, len(self.paths))
        if k == len(self.paths):
            for column in (self.paths, self.files, self.start, self.end, self.label, self.not_found, self.confidence):
                column.append(None)  # type: ignore[arg-type]
        self.paths[k], self.files[k], self.label[k] = path, file, label
        self.start[k], self.end[k] = span
        self.not_found[k], self.confidence[k] = False, float("nan")
        if label:
            self.names.add(label)
        return k

    def add_group(self, group: list[dict[str, Any]], span: tuple[int, int]) -> None:
        """Add one image's records (one per category: its guesses), whose lines are bytes ``span`` of the journal."""
        first = group[0]
        main = next((r for r in group if r["category"] == first["label"]), first)
        k = self.add(first["path"], first["file"], first["label"], span)
        self.not_found[k], self.confidence[k] = main["found"] is False, float(main["mean_confidence"])
        self.names.update(r["category"] for r in group)
        self.names.update(guess[0] for guess in main.get("guesses", []))

    def scan(self, journal: Path, data: bytes, offset: int, line: int) -> dict[str, int]:
        """Read ``data``'s lines from byte ``offset`` (line number ``line``): one item per image, a later group of
        records for an image replacing an earlier one, lines that are not whole records named in ``warnings``, a
        cut last line (a kill) dropped. Returns where a scan of more lines resumes (the last group's start)."""
        group: list[dict[str, Any]] = []
        group_at, group_end = (offset, line), offset

        def close_group() -> None:
            if group:
                self.add_group(group, (group_at[0], group_end))
                group.clear()

        size, terminated = len(data), data.endswith(b"\n")
        position = offset
        while position < size:
            cut = data.find(b"\n", position)
            after = size if cut < 0 else cut + 1
            raw = data[position : size if cut < 0 else cut]
            if raw.strip():
                record = parse_line(raw)
                if record is None and after == size and not terminated:
                    self.warnings.append(cut_warning(journal))
                    break
                problem = record_problem(record)
                if problem is not None or record is None:
                    self.warnings.append(line_warning(journal, line, str(problem)))
                    close_group()
                    group_at = (after, line + 1)
                else:
                    if group and record["path"] != group[0]["path"]:
                        close_group()
                    if not group:
                        group_at = (position, line)
                    group.append(record)
                    group_end = after
            elif not group:
                group_at = (after, line + 1)
            position, line = after, line + 1
        close_group()
        return {"offset": group_at[0], "line": group_at[1]}

    def merge_suspects(self, path: Path) -> dict[int, str]:
        """Add ``suspects.json``'s rows: the signal of the crop's images it names, an item for each other one;
        returns each suspect's row as JSON, by item number."""
        rows = _suspect_rows(path, self.warnings)
        by_abspath = {os.path.abspath(p): k for k, p in enumerate(self.paths)}  # suspects name paths as --data did
        shown: dict[int, str] = {}
        for key, row in rows.items():
            k = by_abspath.get(os.path.abspath(key))
            if k is None:
                k = by_abspath[os.path.abspath(key)] = self.add(key, key, row["label"] or None, (-1, -1))
            shown[k] = json.dumps(row)
            self.names.add(row["other_category"])
        return shown

    def finish(self, kind: str, suspects: dict[int, str], crop: dict[str, Any]) -> Columns:
        n = len(self.paths)
        names = sorted(self.names)
        name_id = {name: k for k, name in enumerate(names)}
        score = np.full(n, np.nan)
        for k, row in suspects.items():
            score[k] = suspect_score(json.loads(row))
        texts = {
            "paths": [p.encode(*_CODEC) for p in self.paths],
            "files": [f.encode(*_CODEC) for f in self.files],
            "suspects": [suspects.get(k, "").encode(*_CODEC) for k in range(n)],
        }
        blobs: dict[str, Any] = {name: np.frombuffer(b"".join(p), dtype=np.uint8) for name, p in texts.items()}
        blobs.update({at: _offsets(texts[name]) for name, at in _TEXTS.items()})
        return Columns(
            kind=kind,
            names=names,
            warnings=self.warnings,
            **blobs,
            path_order=np.array(sorted(range(n), key=self.paths.__getitem__), dtype=np.int64),
            file_order=np.array(sorted(range(n), key=self.files.__getitem__), dtype=np.int64),
            start=np.array(self.start, dtype=np.int64),
            end=np.array(self.end, dtype=np.int64),
            label=np.array([-1 if label is None else name_id[label] for label in self.label], dtype=np.int32),
            not_found=np.array(self.not_found, dtype=bool),
            confidence=np.array(self.confidence, dtype=np.float64),
            score=score,
            crop=crop,
        )


def _offsets(pieces: list[bytes]) -> np.ndarray:
    at = np.zeros(len(pieces) + 1, dtype=np.int64)
    np.cumsum([len(p) for p in pieces], out=at[1:])
    return at


def _suspect_rows(path: Path, warnings: list[str]) -> dict[str, dict[str, Any]]:
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


def suspect_score(row: dict[str, Any]) -> float:
    """A suspect's score: the graded gap, else the other class's mean confidence."""
    gap = row.get("gap")
    return float(gap) if gap is not None else float(row["other_mean_confidence"])


def build(journal: Path | None, data: bytes, suspects: Path | None, kept: Columns | None = None) -> Columns:
    """The columns of the run: ``data`` is ``journal``'s bytes (``journal`` ``None``: a suspects OUTDIR);
    ``kept``: columns built from a start of the same ``data``, whose crop part is taken as it is."""
    builder = _Builder.of_crop(kept) if kept is not None else _Builder()
    resume = (
        {"offset": kept.crop["offset"], "line": kept.crop["line"]} if kept is not None else {"offset": 0, "line": 1}
    )
    if journal is not None:
        resume = builder.scan(journal, data, resume["offset"], resume["line"])
    return _columns(builder, journal is not None, data, resume, suspects)


def _columns(builder: _Builder, crop_run: bool, data: bytes, resume: dict[str, int], suspects: Path | None) -> Columns:
    """The columns of ``builder``'s crop part (``data``: the journal's bytes, read up to ``resume``) and
    ``suspects``' rows."""
    crop = {
        **resume,
        "items": len(builder.paths),
        "names": sorted(builder.names),
        "warnings": list(builder.warnings),
        "size": len(data),
        "crc": zlib.crc32(data),
        "terminated": not data or data.endswith(b"\n"),
    }
    shown = builder.merge_suspects(suspects) if suspects is not None else {}
    kind = "crop" if crop_run else "suspects"
    if crop_run and shown:
        kind = "crop + suspects"
    return builder.finish(kind, shown, crop)


def grown_from(kept: Columns, data: bytes, journal_key: list[int] | None) -> bool:
    """Whether ``data`` (the journal now, its key ``journal_key``) is the bytes ``kept`` was built from, or those
    bytes with more lines after them (same file, the kept part unchanged: its checksum)."""
    old = kept.sources.get("journal")
    if old is None or journal_key is None or old[3:] != journal_key[3:] or not kept.crop.get("terminated"):
        return False
    size = kept.crop["size"]
    return size <= len(data) and zlib.crc32(memoryview(data)[:size]) == kept.crop["crc"]


# --------------------------------------------------------------------------- the kept file


def source_key(stat: os.stat_result | None) -> list[int] | None:
    """What identifies a version of a file: size, modification and change times, inode, device."""
    if stat is None:
        return None
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, stat.st_dev]


def save(outdir: Path, columns: Columns) -> None:
    """Keep ``columns`` in ``outdir`` (atomically; an OUTDIR that cannot be written to is left as it is)."""
    meta = {"kind": columns.kind, "names": columns.names, "warnings": columns.warnings, "crop": columns.crop,
            "sources": columns.sources}  # fmt: skip
    write_kept(outdir / CACHE, _MAGIC, meta, {name: getattr(columns, name) for name in _ARRAYS})


def load(outdir: Path) -> Columns | None:
    """The columns kept in ``outdir``, or ``None`` where there are none, or none whole and consistent."""
    kept = read_kept(outdir / CACHE, _MAGIC, _ARRAYS)
    if kept is None:
        return None
    try:
        columns = Columns(**kept[0], **kept[1])
    except TypeError:
        return None
    return columns if _consistent(columns) else None


def _consistent(columns: Columns) -> bool:
    """Whether the arrays of ``columns`` fit together (lengths, offsets, indices in range)."""
    n = len(columns.start)
    per_item = ("end", "label", "not_found", "confidence", "score", "path_order", "file_order")
    if any(len(getattr(columns, name)) != n for name in per_item):
        return False
    for blob, at in _TEXTS.items():
        offsets = getattr(columns, at)
        if len(offsets) != n + 1 or offsets[0] != 0 or offsets[-1] != len(getattr(columns, blob)):
            return False
        if n and np.any(np.diff(offsets) < 0):
            return False
    for order in (columns.path_order, columns.file_order):  # each a permutation of the items
        if n and (order.min() < 0 or order.max() >= n or not np.all(np.bincount(order, minlength=n) == 1)):
            return False
    crop = columns.crop
    if not all(isinstance(crop.get(key), int) for key in ("items", "offset", "line", "size", "crc")):
        return False
    if not all(isinstance(crop.get(key), list) for key in ("names", "warnings")) or crop["items"] > n:
        return False
    return bool(np.all((columns.label >= -1) & (columns.label < len(columns.names))))


# --------------------------------------------------------------------------- kept up to date


def fresh(outdir: Path, journal: BinaryIO | None, journal_path: Path, suspects: Path | None) -> Columns:
    """The columns of the run in ``outdir``: the kept ones if they were built from its files as they are, else
    built anew (on top of the kept ones when the journal only grew) and kept. ``journal``: the crop journal at
    ``journal_path``, open at its start (``None``: none); ``suspects``: ``suspects.json`` (``None``: none)."""
    sources = {
        "journal": source_key(os.fstat(journal.fileno())) if journal is not None else None,
        "suspects": source_key(suspects.stat()) if suspects is not None else None,
    }
    kept = load(outdir)
    if kept is not None and kept.sources == sources:
        return kept
    data = journal.read() if journal is not None else b""
    if kept is not None and not grown_from(kept, data, sources["journal"]):
        kept = None
    columns = build(journal_path if journal is not None else None, data, suspects, kept)
    columns.sources = sources
    save(outdir, columns)
    return columns


def keep_index(outdir: Path, journal: Path, suspects: Path) -> None:
    """Bring the kept index of ``outdir`` up to date with its crop ``journal`` and ``suspects`` file, either may be
    absent (the end of a run). Files that cannot be read leave it as it is: ``fcnx review`` names the problem."""
    if not journal.is_file() and not suspects.is_file():
        return
    try:
        with open(journal, "rb") if journal.is_file() else contextlib.nullcontext() as file:
            fresh(outdir, file, journal, suspects if suspects.is_file() else None)
    except (OSError, FcnxError):
        pass


def indexed_records(outdir: Path, journal: CropJournal, suspects: Path) -> Iterator[Json]:
    """The records of a crop run's ``journal``, as :attr:`~fcnx.io.journal.CropJournal.records` gives them, each
    image's added to the run's index on the way; once all are read, the index is kept (:func:`_keep_built`)."""
    builder, records, whole = _Builder(), journal.records, True
    for entry in list(journal.entries.values()):
        group = list(itertools.islice(records, entry.boxes))
        whole = whole and all(record_problem(r) is None for r in group)
        builder.add_group(group, (entry.offset, entry.offset + entry.size))
        yield from group
    _keep_built(outdir, journal.path, suspects, builder if whole else None)


def _keep_built(outdir: Path, path: Path, suspects: Path, builder: _Builder | None) -> None:
    """Keep the index ``builder`` holds if the journal at ``path`` is exactly its images' lines, in order (what a
    scan of it finds); else bring the kept index up to date from the files (:func:`keep_index`)."""
    try:
        with open(path, "rb") as file:
            key, data = source_key(os.fstat(file.fileno())), file.read()
        if builder is None or not builder.paths or not _tiles(data, zip(builder.start, builder.end)):
            keep_index(outdir, path, suspects)
            return
        last = builder.start[-1]
        resume = {"offset": last, "line": data.count(b"\n", 0, last) + 1}
        shown = suspects if suspects.is_file() else None
        sources = {"journal": key, "suspects": source_key(shown.stat()) if shown else None}
        columns = _columns(builder, True, data, resume, shown)
        columns.sources = sources
    except (OSError, FcnxError):
        return
    save(outdir, columns)


def _tiles(data: bytes, spans: Iterable[tuple[int, int]]) -> bool:
    """Whether ``spans`` (byte ranges of whole lines, in order) cover ``data`` but for blank lines, which ends
    with a newline."""
    at = 0
    for start, end in spans:
        if start < at or end > len(data) or data[at:start].strip():
            return False
        at = end
    return not data[at:].strip() and data.endswith(b"\n")
