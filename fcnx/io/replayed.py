"""``review.jsonl`` replayed against a run's images, kept beside the review index in ``OUTDIR/.fcnx-review-decisions``
so that a reopened review reads only the decisions appended since.

What is kept: per decision line, its image's item number in the review index (-1: an image the run does not
have) and where the line lies in the file; per image, the merged verdict's code (:data:`VERDICTS`), whether the
reviewers disagree, how many decisions it has; the decisions of images the run does not
have, counted by path. An image's decisions themselves stay in ``review.jsonl``: :meth:`Replay.decisions` reads
its lines back when a page shows it.

The kept state is used while ``review.jsonl`` is the file it was built from, or that file with lines appended:
the same inode and device, at least as long, and the CRC-32 of its first ``size`` bytes that of the bytes
replayed. The checksum covers every kept byte, not only the last lines: ``review.jsonl`` is small beside what
its replay costs (about 200 bytes a decision: 100,000 decisions are 20 MB, read and summed in milliseconds,
parsed and merged in seconds), and an edit anywhere before the end (a hand edit, a file put back) must not
leave a state that a full replay would not give. It is kept only for one review index (its ``sources``: the
items' numbers). A file that was cut, rewritten, or has lines appended that are not whole decisions is
replayed in full, after :func:`~fcnx.io.decisions.repair_decisions` set aside and named the bad lines.
Which decided images' files are gone is checked at every opening (:func:`_check_files`): only for images
decided since while the folders listed last time are unchanged.
"""

from __future__ import annotations

import json
import os
import time
import zlib
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from stat import S_ISREG
from typing import Any

import numpy as np

from fcnx.io.decisions import Decision, DecisionLog, decision_problem, from_dict, merge, repair_decisions
from fcnx.io.kept import read_kept, write_kept

#: the kept replay inside OUTDIR
CACHE = ".fcnx-review-decisions"
_MAGIC = b"fcnx-review-decisions 1\n"
#: an image's merged verdict (its action) -> its code in :attr:`Replay.state` (0: none)
VERDICTS = (None, "accept", "reject", "relabel")
CODE = {action: code for code, action in enumerate(VERDICTS)}
#: a folder changed less than this long ago (ns) is checked again next time
RACY_NS = 2_000_000_000
_PER_LINE = ("item", "offset", "length")
_PER_ITEM = ("state", "disputed", "count")
#: a decision and where its line lies in ``review.jsonl`` (offset, length with its newline)
Line = tuple[int, int, Decision]
#: what finds the item numbers of paths (:meth:`fcnx.review.index.Index.find_all`)
Finder = Callable[[Collection[str]], dict[str, int | None]]


@dataclass
class Replay:
    """The decisions of one ``review.jsonl`` (the first ``size`` bytes, CRC-32 ``crc``, of the file ``key`` names)
    for the items of one review index (``sources``): see the module's docstring for each array."""

    item: np.ndarray
    offset: np.ndarray
    length: np.ndarray
    state: np.ndarray
    disputed: np.ndarray
    count: np.ndarray
    #: decisions of paths the run does not have: path -> how many, the first seen first
    missing: dict[str, int]
    #: decided images whose file was gone at the last check (the first decided first), and the fingerprints of
    #: the folders of the decided images then (empty: not to be trusted, check every image again)
    gone: list[int]
    folders: dict[str, list[int]]
    size: int
    crc: int
    key: list[int]
    sources: dict[str, Any]
    _order: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False, compare=False)

    def lines(self, k: int) -> np.ndarray:
        """The numbers of item ``k``'s decision lines, in file order."""
        if self._order is None:  # the lines by item (stable: file order within each), and where each item's start
            order = np.argsort(self.item, kind="stable")
            self._order = (order, np.searchsorted(self.item[order], np.arange(len(self.state) + 1)))
        order, starts = self._order
        return order[starts[k] : starts[k + 1]]

    def decisions(self, path: Path, k: int) -> list[Decision]:
        """Item ``k``'s decisions, read from their lines of ``review.jsonl`` at ``path``."""
        lines = self.lines(k).tolist()
        if not lines:
            return []
        with open(path, "rb") as file:
            return [_decision(os.pread(file.fileno(), int(self.length[j]), int(self.offset[j]))) for j in lines]


def _decision(raw: bytes) -> Decision:
    return from_dict(json.loads(raw))


def replay(
    path: Path, items: int, sources: dict[str, Any], find_all: Finder, path_of: Callable[[int], str]
) -> tuple[Replay, DecisionLog]:
    """``review.jsonl`` at ``path`` replayed for a review index of ``items`` items built from ``sources``
    (``find_all``: its finder of paths, ``path_of``: an item's path): the kept replay and the lines appended
    since, else the whole file, repaired first if it holds lines that are not whole decisions; its
    :attr:`Replay.gone` checked now (:func:`_check_files`). Returns the replay, kept again, and what the repair
    set aside (an empty log if nothing). ``OSError`` if the file cannot be read or repaired."""
    data, key = _read(path)
    kept = _load(path.parent, items, sources)
    state, log = None, DecisionLog()
    if kept is not None and _extends(kept, data, key):
        tail = _parse(data, kept.size)
        if tail == []:
            state = kept
        elif tail is not None:
            state = _extend(kept, tail, data, key, find_all)
    if state is None:
        lines = _parse(data, 0)
        if lines is None:
            log = repair_decisions(path)
            data, key = _read(path)
            lines = _parse(data, 0)
            if lines is None:
                raise OSError("changed while it was being read")
        state, kept = _full(lines, data, key, items, sources, find_all), None
    checked = (list(state.gone), dict(state.folders))
    _check_files(state, kept, path_of)
    if state is not kept or checked != (state.gone, state.folders):
        _keep(path, state)
    return state, log


def _read(path: Path) -> tuple[bytes, list[int]]:
    """The bytes of ``path`` (none if there is no such file) and what identifies the file: its inode and device."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return b"", []
    with os.fdopen(fd, "rb") as file:
        stat = os.fstat(fd)
        if not S_ISREG(stat.st_mode):
            raise OSError("not a regular file")
        return file.read(), [stat.st_ino, stat.st_dev]


def _parse(data: bytes, start: int) -> list[Line] | None:
    """The decisions of ``data``'s lines from byte ``start`` (as :func:`~fcnx.io.decisions.read_decisions` reads
    them), or ``None`` if one is not a whole decision or the last has no newline: such a file is repaired first."""
    if len(data) > start and not data.endswith(b"\n"):
        return None
    lines: list[Line] = []
    at = start
    for raw in data[start:].split(b"\n")[:-1]:
        end = at + len(raw) + 1
        if raw.strip():
            try:
                record = json.loads(raw)
            except (ValueError, RecursionError):
                return None
            if decision_problem(record) is not None:
                return None
            lines.append((at, end - at, from_dict(record)))
        at = end
    return lines


def _full(lines: list[Line], data: bytes, key: list[int], items: int, sources: dict[str, Any], find: Finder) -> Replay:
    """The replay of every line."""
    where = find({d.path for _, _, d in lines})
    item = np.array([-1 if where[d.path] is None else where[d.path] for _, _, d in lines], dtype=np.int64)
    replay = Replay(
        item=item,
        offset=np.array([at for at, _, _ in lines], dtype=np.int64),
        length=np.array([n for _, n, _ in lines], dtype=np.int64),
        state=np.zeros(items, dtype=np.int8),
        disputed=np.zeros(items, dtype=bool),
        count=np.bincount(item[item >= 0], minlength=items).astype(np.int64),
        missing=_missing({}, lines, where),
        gone=[],
        folders={},
        size=len(data),
        crc=zlib.crc32(data),
        key=key,
        sources=sources,
    )
    _merge_into(replay, [d for (_, _, d), k in zip(lines, item.tolist()) if k >= 0], where)
    return replay


def _extend(kept: Replay, tail: list[Line], data: bytes, key: list[int], find: Finder) -> Replay:
    """``kept`` with the ``tail`` lines of ``data`` replayed on top: each image they concern merged again with
    its earlier decisions (read from ``data``)."""
    where = find({d.path for _, _, d in tail})
    new = np.array([-1 if where[d.path] is None else where[d.path] for _, _, d in tail], dtype=np.int64)
    replay = Replay(
        item=np.concatenate([kept.item, new]),
        offset=np.concatenate([kept.offset, np.array([at for at, _, _ in tail], dtype=np.int64)]),
        length=np.concatenate([kept.length, np.array([n for _, n, _ in tail], dtype=np.int64)]),
        state=kept.state.copy(),
        disputed=kept.disputed.copy(),
        count=kept.count + np.bincount(new[new >= 0], minlength=len(kept.state)),
        missing=_missing(dict(kept.missing), tail, where),
        gone=list(kept.gone),
        folders=dict(kept.folders),
        size=len(data),
        crc=zlib.crc32(memoryview(data)[kept.size :], kept.crc),
        key=key,
        sources=kept.sources,
    )
    touched = {k: _decisions_in(data, replay, k) for k in dict.fromkeys(new.tolist()) if k >= 0}
    _merge_into(replay, [d for ds in touched.values() for d in ds], {ds[0].path: k for k, ds in touched.items()})
    return replay


def _decisions_in(data: bytes, replay: Replay, k: int) -> list[Decision]:
    """Item ``k``'s decisions, read from ``data`` (the file's bytes)."""
    spans = zip(replay.offset[replay.lines(k)].tolist(), replay.length[replay.lines(k)].tolist())
    return [_decision(data[at : at + n]) for at, n in spans]


def _merge_into(replay: Replay, decisions: list[Decision], where: dict[str, int | None]) -> None:
    """Set the verdicts and disagreements of the images of ``decisions`` (all of each one's, in file order)."""
    merged = merge([decisions])
    for path in {d.path for d in decisions}:
        verdict = merged.verdicts.get(path)
        replay.state[where[path]] = CODE[None if verdict is None else verdict.action]
        replay.disputed[where[path]] = path in merged.disagreements


def _missing(counts: dict[str, int], lines: list[Line], where: dict[str, int | None]) -> dict[str, int]:
    for _, _, d in lines:
        if where[d.path] is None:
            counts[d.path] = counts.get(d.path, 0) + 1
    return counts


def _extends(kept: Replay, data: bytes, key: list[int]) -> bool:
    """Whether ``data`` (the file ``key`` names) is the bytes ``kept`` replayed, or those with lines after them."""
    return kept.key == key and kept.size <= len(data) and zlib.crc32(memoryview(data)[: kept.size]) == kept.crc


def _keep(path: Path, replay: Replay) -> Replay:
    meta = {"missing": list(replay.missing.items()), "gone": replay.gone, "folders": replay.folders,
            "size": replay.size, "crc": replay.crc, "key": replay.key, "sources": replay.sources}  # fmt: skip
    arrays = {name: getattr(replay, name) for name in (*_PER_LINE, *_PER_ITEM)}
    write_kept(path.parent / CACHE, _MAGIC, meta, arrays)
    return replay


def _load(outdir: Path, items: int, sources: dict[str, Any]) -> Replay | None:
    """The replay kept in ``outdir`` for this index, if whole and consistent."""
    kept = read_kept(outdir / CACHE, _MAGIC, [*_PER_LINE, *_PER_ITEM])
    if kept is None:
        return None
    meta, arrays = kept
    try:
        replay = Replay(**arrays, **{**meta, "missing": dict(meta["missing"])})
    except (TypeError, ValueError, KeyError):
        return None
    lines = len(replay.item)
    if replay.sources != sources or any(len(arrays[name]) != lines for name in _PER_LINE):
        return None
    if any(len(arrays[name]) != items for name in _PER_ITEM) or not isinstance(replay.size, int):
        return None
    if not all(isinstance(k, int) and 0 <= k < items for k in replay.gone):
        return None
    in_range = lines == 0 or (replay.item.min() >= -1 and replay.item.max() < items and replay.offset.min() >= 0)
    ends = replay.offset + replay.length
    return replay if in_range and (lines == 0 or ends.max() <= replay.size) else None


def _check_files(replay: Replay, kept: Replay | None, path_of: Callable[[int], str]) -> None:
    """Set which decided images' files are gone: where the folders ``kept`` checked are unchanged (their
    fingerprints), its answer and the images decided since; else every decided image, its folder listed once."""
    if kept is not None and kept.folders and all(_fingerprint(f) == fp for f, fp in kept.folders.items()):
        was = np.zeros(len(replay.count), dtype=bool)
        was[: len(kept.count)] = kept.count > 0
        ask, gone = np.flatnonzero((replay.count > 0) & ~was).tolist(), list(kept.gone)
    else:
        ask, gone, replay.folders = np.flatnonzero(replay.count).tolist(), [], {}
    if ask:
        paths = {k: path_of(k) for k in ask}
        absent, folders = files_gone(paths.values())
        gone += [k for k in ask if paths[k] in absent]
        replay.folders = {**replay.folders, **folders} if folders is not None else {}
    replay.gone = sorted(gone, key=lambda k: replay.lines(k)[0])


def _fingerprint(folder: str) -> list[int] | None:
    """What changes when a name is added to or taken from ``folder``: its inode, device, modification and change
    times (``None`` if it cannot be asked for, or its names changed in the last 2 s: a change in the same tick of
    the file system's clock would leave its modification time as it is)."""
    try:
        stat = os.stat(folder or ".")
    except OSError:
        return None
    if time.time_ns() - stat.st_mtime_ns < RACY_NS:
        return None
    return [stat.st_ino, stat.st_dev, stat.st_mtime_ns, stat.st_ctime_ns]


def files_gone(paths: Iterable[str]) -> tuple[set[str], dict[str, list[int]] | None]:
    """Those of ``paths`` that no longer exist (not even as a dangling link), as ``os.path.lexists`` answers: each
    folder is listed once (a folder of 1,000 images costs about what asking for 10 of them does), and a path
    whose folder does not list its name is asked for itself. Also each folder's fingerprint, taken before it
    was listed (``None`` if one has none: every path is to be asked again next time)."""
    listed: dict[str, set[str] | None] = {}
    folders: dict[str, list[int]] | None = {}
    gone = set()
    for path in paths:
        folder, name = os.path.split(path)
        if folder not in listed:
            fingerprint = _fingerprint(folder)
            if fingerprint is None or folders is None:
                folders = None
            else:
                folders[folder] = fingerprint
            try:
                listed[folder] = set(os.listdir(folder or "."))
            except OSError:
                listed[folder] = None
        names = listed[folder]
        if (names is None or name not in names) and not os.path.lexists(path):
            gone.add(path)
    return gone, folders
