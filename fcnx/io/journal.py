"""The crop journal ``boxes.jsonl``: JSON lines that a kill, a full disk or a hand edit cannot make fatal.

``fcnx crop`` appends each image's records as one ``os.write`` of whole lines, flushed to disk,
and cuts the file back to its last whole line if the write fails (a full disk), so only a kill
can leave a cut last line: one without a final newline that is not valid JSON; it is dropped.
File names that are not valid UTF-8 are kept losslessly: their undecodable bytes are written as
``\\udcXX`` escapes (Python's ``surrogateescape``), which read back to the same bytes.

Both ``fcnx crop`` (resuming) and ``fcnx evaluate`` (reading boxes) read journals with
:func:`read_journal`; each decides what a later record for the same image supersedes.
:class:`CropJournal` is ``fcnx crop``'s resume state: a line that is not a whole record (a hand
edit, another program) is set aside once, and its image redone.
"""

from __future__ import annotations

import json
import os
import stat
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from fcnx.errors import UsageError
from fcnx.io.discovery import ImageItem
from fcnx.io.files import atomic_write, write_all
from fcnx.io.record import BoxLine, CropRecord, Json, cut_warning, line_warning, parse_line, record_problem


@dataclass
class Journal:
    """The lines of a journal: ``(line number, record)``, the record ``None`` for a line that is not a JSON object."""

    lines: list[tuple[int, dict[str, Any] | None]] = field(default_factory=list)
    #: the last line was cut short (no newline, not JSON) and is dropped
    cut: bool = False
    #: the file does not end with a newline (a cut line, or a complete record whose newline is missing)
    unterminated: bool = False


def read_journal(path: Path) -> Journal:
    """The lines of the journal at ``path`` (``OSError`` if it cannot be read or is not a regular file)."""
    journal = Journal()
    journal.lines = list(journal_lines(path, journal))
    return journal


def journal_lines(path: Path, journal: Journal) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """The lines of the journal at ``path`` one at a time, as :func:`read_journal` lists them (a reader of a large
    journal keeps only what it needs of each); ``journal``'s ``cut`` and ``unterminated`` are set as they are read."""
    return ((number, record) for number, _, _, record in _parsed_lines(path, journal))


def read_records(path: Path, warnings: list[str]) -> Iterator[tuple[int, CropRecord]]:
    """The crop records of the journal at ``path`` one at a time, with their line numbers: the reader of every
    command that needs whole records. A line that is not one (:func:`~fcnx.io.record.line_warning`) and a last line
    cut short (:func:`~fcnx.io.record.cut_warning`) are skipped with a line in ``warnings``; a file that cannot be
    read is a :class:`~fcnx.errors.UsageError`."""
    journal = Journal()
    try:
        for number, line in journal_lines(path, journal):
            try:
                record = CropRecord.parse(line)
            except ValueError as exc:
                warnings.append(line_warning(path, number, str(exc)))
                continue
            yield number, record
    except OSError as exc:
        raise _unreadable(exc, path) from None
    if journal.cut:
        warnings.append(cut_warning(path))


def read_box_lines(path: Path, warnings: list[str]) -> Iterator[tuple[int, BoxLine]]:
    """The box lines (:class:`~fcnx.io.record.BoxLine`) of a box file with their line numbers, one at a time: the
    reader of ``fcnx evaluate --crops``, ``fcnx train --crops`` and ``fcnx export``, which take a crop journal or
    any file with its box fields. A line without a box is a :class:`~fcnx.errors.UsageError` naming it, a last line
    cut short a line in ``warnings`` (:func:`~fcnx.io.record.cut_warning`)."""
    journal = Journal()
    try:
        for number, line in journal_lines(path, journal):
            try:
                yield number, BoxLine.of(line)
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise not_a_box(path, number, exc) from None
    except OSError as exc:
        raise _unreadable(exc, path) from None
    if journal.cut:
        warnings.append(cut_warning(path))


def not_a_box(path: Path, number: int, exc: Exception) -> UsageError:
    """The one line of a line of a box file that gives no box (or, for its reader, not what it needs)."""
    return UsageError(f"line {number}: not a box record ({type(exc).__name__}: {exc})", path)


def _unreadable(exc: OSError, path: Path) -> UsageError:
    return UsageError(f"cannot read boxes ({type(exc).__name__}: {exc})", path)


def _parsed_lines(path: Path, journal: Journal) -> Iterator[tuple[int, int, bytes, dict[str, Any] | None]]:
    """:func:`journal_lines` with each line's offset in the file and its bytes (without the newline), read
    from the file a line at a time."""
    with _open_regular(path) as file:
        offset = 0
        for number, raw in enumerate(file, 1):
            start, offset = offset, offset + len(raw)
            journal.unterminated = not raw.endswith(b"\n")
            raw = raw.removesuffix(b"\n")
            if not raw.strip():
                continue
            record = parse_line(raw)
            if journal.unterminated and record is None:  # the last line, cut short
                journal.cut = True
                break
            yield number, start, raw, record


def _open_regular(path: Path) -> BinaryIO:
    """The regular file at ``path``, open for reading in binary; ``OSError`` for anything else (a FIFO would block)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    file = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        file.close()
        raise OSError("not a regular file")
    return file


def dump_line(record: Json) -> bytes:
    """One journal line: JSON in UTF-8; undecodable bytes of file names (lone surrogates) as ``\\udcXX`` escapes."""
    return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8", "backslashreplace")


def append_lines(path: Path, data: bytes) -> int:
    """Append whole lines with one write, flushed to disk; if that fails, cut the file back to what it was.
    Returns the offset in the file where ``data`` begins."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        size = os.fstat(fd).st_size
        try:
            write_all(fd, data)
            os.fsync(fd)
        except BaseException:
            os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)
    return size


# --------------------------------------------------------------------------- fcnx crop's resume state


class Entry(NamedTuple):
    """One image's records in ``fcnx crop``'s journal: where they lie in the file (``offset``, ``size`` in
    bytes), how many (``boxes``), and what resuming needs of them without reading them: the source file's ``(size,
    mtime_ns)`` (``None`` if the records disagree) and each record's output files (crop, heatmap, map)."""

    offset: int
    size: int
    boxes: int
    source: tuple[int, int] | None
    outputs: tuple[tuple[str | None, str | None, str | None], ...]

    @classmethod
    def of(cls, offset: int, size: int, records: Sequence[Json]) -> Entry:
        sources = {(r["source_size"], r["source_mtime_ns"]) for r in records}
        outputs = tuple((r["crop"], r["heatmap"], r.get("map")) for r in records)
        return cls(offset, size, len(records), next(iter(sources)) if len(sources) == 1 else None, outputs)


#: the output fields of a record, in the order of :attr:`Entry.outputs`
OUTPUTS = ("crop", "heatmap", "map")


class CropJournal:
    """``fcnx crop``'s journal at ``path``: per image (source path) where its latest records lie, in order.

    The records themselves stay in the file (about 1.5 KB each): memory holds an :class:`Entry` per image,
    and :attr:`records` reads them back when the tables are written. ``aside``: where lines that are not
    whole records go (appended, so each is reported once).
    """

    def __init__(self, path: Path, aside: Path) -> None:
        self.path, self.aside = path, aside
        self.entries: dict[str, Entry] = {}
        #: problems met on loading: ``(line number, why)`` of each line set aside
        self.set_aside: list[tuple[int, str]] = []
        self._stale = False  # the file holds superseded records (rewritten by :meth:`compact`)
        self._owner: dict[str, str] = {}

    def load(self) -> None:
        """Read the journal; drop a cut last line, set aside lines that are not records, compact superseded ones."""
        if not self.path.exists():
            return
        if not self.path.is_file():
            raise UsageError(
                "is not a regular file (a FIFO, a folder?): move it away, or choose another OUTDIR", self.path
            )
        journal = Journal()
        entries: dict[str, Entry] = {}
        group: list[Json] = []  # the records of the image being read, from ``start`` to ``end``
        start = end = 0
        rejected: list[bytes] = []
        repaired = False

        def close_group() -> None:
            if group:
                entries[group[0]["path"]] = Entry.of(start, end - start, group)
                group.clear()

        for number, offset, raw, record in _parsed_lines(self.path, journal):
            problem = record_problem(record)
            if problem is not None:
                self.set_aside.append((number, problem))
                rejected.append(raw + b"\n")
                close_group()
                repaired = True
                continue
            assert record is not None
            key = record["path"]
            if not group or key != group[0]["path"]:  # a new group (blank lines between records do not end one)
                close_group()
                if key in entries:
                    repaired = True  # an earlier write for this image is superseded
                start = offset
            group.append(record)
            end = offset + len(raw) + 1
        close_group()
        repaired = repaired or journal.unterminated  # a line cut by a kill, or a last record without its newline
        self.entries = entries
        if rejected:
            append_lines(self.aside, b"".join(rejected))
        if repaired:
            self.rewrite()
        self._owner = {
            name: key for key, entry in self.entries.items() for names in entry.outputs for name in names if name
        }

    def _read(self, file: BinaryIO, entry: Entry) -> list[Json]:
        file.seek(entry.offset)
        return [json.loads(line) for line in file.read(entry.size).split(b"\n") if line.strip()]

    def rewrite(self) -> None:
        """Write the journal anew from the entries, in their order (atomically); one image in memory at a time."""
        spans = array("q")  # each image's new offset and size, applied once the new file is in place

        def write(out: BinaryIO) -> None:
            with _open_regular(self.path) as file:
                for entry in self.entries.values():
                    data = b"".join(dump_line(r) for r in self._read(file, entry))
                    spans.extend((out.tell(), len(data)))
                    out.write(data)

        atomic_write(self.path, write)
        for k, (key, entry) in enumerate(self.entries.items()):
            self.entries[key] = entry._replace(offset=spans[2 * k], size=spans[2 * k + 1])
        self._stale = False

    @property
    def records(self) -> Iterator[Json]:
        """Every image's records in order, read from the file (one image in memory at a time)."""
        if not self.entries:
            return
        with _open_regular(self.path) as file:
            for entry in self.entries.values():
                yield from self._read(file, entry)

    @property
    def count(self) -> int:
        """The records of all images."""
        return sum(entry.boxes for entry in self.entries.values())

    def owner(self) -> dict[str, str]:
        """Each output file (relative to OUTDIR) the records name, and the source path of its record, as loaded
        (handed over: the journal keeps no copy)."""
        owner, self._owner = self._owner, {}
        return owner

    def done(self, item: ImageItem, boxes: int | range, wanted: Callable[[Json], bool]) -> bool:
        """Whether ``item`` has ``boxes`` records (a number, or a range of them) of its unchanged source file, each
        with what ``wanted`` checks of its output fields (``crop``, ``heatmap``, ``map``)."""
        entry = self.entries.get(str(item.path))
        if entry is None or entry.boxes not in (range(boxes, boxes + 1) if isinstance(boxes, int) else boxes):
            return False
        try:
            stat = item.path.stat()
        except OSError:
            return False
        if entry.source != (stat.st_size, stat.st_mtime_ns):
            return False
        return all(wanted(dict(zip(OUTPUTS, names))) for names in entry.outputs)

    def append(self, records: Sequence[CropRecord]) -> None:
        """Add one image's records: one write of whole lines (on failure the file is as before and so is the state)."""
        lines = [r.to_json() for r in records]
        data = b"".join(map(dump_line, lines))
        offset = append_lines(self.path, data)
        key = records[0].path
        if self.entries.pop(key, None) is not None:
            self._stale = True
        self.entries[key] = Entry.of(offset, len(data), lines)

    def forget(self, key: str) -> None:
        """Drop an image's records (they name files that could not be put in place); compacted at the end."""
        if self.entries.pop(key, None) is not None:
            self._stale = True

    def compact(self, order: Iterable[str] = ()) -> None:
        """Rewrite the journal if it holds superseded records or is not in ``order`` (source paths; others first)."""
        rank = {key: k for k, key in enumerate(order)}
        keys = list(self.entries)
        wanted = sorted(keys, key=lambda key: rank.get(key, -1))
        if wanted != keys:
            self.entries = {key: self.entries[key] for key in wanted}
            self._stale = True
        if self._stale:
            self.rewrite()
