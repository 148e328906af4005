"""The output folder of ``fcnx crop``, written so that nothing is lost, duplicated, half-written or replaced.

``OUTDIR`` holds the crops (same format as the originals, mirrored folders), ``boxes.jsonl`` (one
record per image and category), ``boxes.csv`` (the same, regenerated at the end of each run),
``heatmaps/`` (``--heatmaps``), ``gallery.html`` (``--gallery``), ``failures.txt``,
``.fcnx-crop.json`` (the settings the boxes were made with, and the fixed-name files fcnx wrote),
``.fcnx-review-index`` (``fcnx review``'s index of the run) and ``.fcnx-lock`` (held by the running ``fcnx crop``).

With ``--in-place`` OUTDIR may be (or lie inside) an input folder: crops are then named
``<stem>.fcnx-crop<suffix>``, such files and ``heatmaps/`` inside OUTDIR are never inputs.

One run at a time holds OUTDIR (:class:`~fcnx.io.files.OutdirLock`), before anything is touched.
Each image's files are written to temporary names, its records appended to ``boxes.jsonl`` (one
write of whole lines), then the files renamed into place: the journal doubles as the resume
manifest, and an image is done when its records match the file's path, size and mtime and its
files exist. fcnx never replaces a file it did not write: a crop or heatmap whose name is taken
by a file the journal does not give to the same image gets a unique name
(:mod:`fcnx.jobs.outdir.naming`); a fixed-name file (``boxes.csv``, ``gallery.html``, ``failures.txt``,
dataset lists) that fcnx did not write refuses the run before it starts.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from fcnx.engine.options import CropOptions
from fcnx.engine.results import Box, CropResult
from fcnx.errors import FcnxError
from fcnx.io.decoding import Source, open_upright, to_rgb
from fcnx.io.discovery import ImageItem
from fcnx.io.files import OutdirLock, commit, is_disk_full, remove_temporaries, stage_bytes
from fcnx.io.journal import CropJournal
from fcnx.io.record import CropRecord, Json, line_warning
from fcnx.io.review_index import indexed_records
from fcnx.jobs.outdir import naming, reports
from fcnx.jobs.outdir.encoding import encode_crop, encode_png
from fcnx.jobs.outdir.maps import encode_map
from fcnx.jobs.outdir.pool import OrderedPool
from fcnx.jobs.outdir.reports import FAILURES, GALLERY, TABLE
from fcnx.jobs.outdir.settings import SETTINGS, SettingsFile
from fcnx.jobs.suspects import OUTPUTS as SUSPECTS_OUTPUTS
from fcnx.method import geometry

JOURNAL = "boxes.jsonl"
#: journal lines that are not whole records, set aside (each reported once)
ASIDE = "boxes.rejected.jsonl"
HEATMAPS = naming.HEATMAPS
RESERVED = (JOURNAL, TABLE, SETTINGS, FAILURES, ASIDE, HEATMAPS, naming.MAPS, GALLERY)
#: the suspects of an OUTDIR that ``fcnx suspects`` also wrote to (shown by ``fcnx review`` with the crops)
SUSPECTS = SUSPECTS_OUTPUTS[1]
_GALLERY_PAGES = re.compile(r"gallery(-\d+)?\.html")


class DiskFull(FcnxError):
    """The disk (or quota) filled up: the run stops; what was written stays whole."""


@dataclass(frozen=True)
class Outcome:
    """One image's end: its records, or the error that stopped it."""

    result: CropResult
    records: list[CropRecord] | None = None
    error: FcnxError | None = None


@dataclass(frozen=True)
class _Staged:
    records: list[CropRecord]
    files: list[tuple[str, Path]]  # (temporary, final path)


def _write_error(exc: BaseException, path: object) -> FcnxError:
    if isinstance(exc, FcnxError):
        return exc
    if is_disk_full(exc):
        assert isinstance(exc, OSError)
        return DiskFull("no space left on the device", path)
    if isinstance(exc, OSError):
        return FcnxError(f"cannot write outputs ({exc.strerror or exc})", path)
    raise exc


class CropOutputs:
    """The output folder of one ``fcnx crop`` run: lock, resume state, files, journal, table and gallery.

    ``options``: the run's, which say what is written (``dry_run``: no crops; ``heatmaps``, ``heatmaps_npy``,
    ``gallery``; ``in_place`` marks crop names with :data:`~fcnx.jobs.outdir.naming.IN_PLACE_MARK`); ``settings``: their
    settings form (:meth:`~fcnx.engine.options.CropOptions.settings`): an OUTDIR made with other settings is refused.
    ``expected_boxes`` is the number of records an image gets (one per category). Nothing is ever written at the path of a
    ``protected`` file (the inputs). ``meta_copies``: dataset lists copied at the end, ``(source,
    path in OUTDIR)``; ``lock``: OUTDIR's lock if the caller took it already. Use as a context manager,
    or call :meth:`open` and :meth:`finish`.
    """

    def __init__(
        self,
        outdir: Path,
        settings: dict[str, Any],
        *,
        net_names: Sequence[str],
        kernel: int,
        stride: int,
        expected_boxes: int | range,
        options: CropOptions | None = None,
        threads: int = 2,
        protected: Iterable[Path] = (),
        meta_copies: Sequence[tuple[Path, PurePosixPath]] = (),
        lock: OutdirLock | None = None,
    ) -> None:
        self.outdir = outdir
        self.settings = settings
        self.net_names = list(net_names)
        self.kernel, self.stride = kernel, stride
        self.expected_boxes = expected_boxes
        self.options = options = options or CropOptions()
        #: what is written per image besides its records (read from ``options``)
        self.crops, self.heatmaps, self.maps = not options.dry_run, options.heatmaps, options.heatmaps_npy
        self.meta_copies = list(meta_copies)
        self.journal = CropJournal(outdir / JOURNAL, outdir / ASIDE)
        #: one line per journal line set aside on opening
        self.warnings: list[str] = []
        self._protected = list(protected)
        self._lock = lock or OutdirLock(outdir, "fcnx crop")
        self._pool: OrderedPool[CropResult, _Staged] = OrderedPool(threads, "fcnx-write")
        self.settings_file = SettingsFile(outdir, settings)
        #: set when the disk filled up (see :meth:`submit`)
        self.full: DiskFull | None = None

    def __enter__(self) -> CropOutputs:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- resume state

    def open(self) -> None:
        """Lock OUTDIR, clean what a killed run left, check settings and files, load the journal.

        Raises :class:`~fcnx.errors.UsageError` for an OUTDIR that is refused, :class:`DiskFull` (or
        another :class:`~fcnx.errors.FcnxError`) when the journal cannot be repaired.
        """
        self._lock.acquire()
        try:
            remove_temporaries(self.outdir)
            fixed = [TABLE, FAILURES, ASIDE, *(rel.as_posix() for _, rel in self.meta_copies)]
            fixed += [p.name for p in self.outdir.iterdir() if _GALLERY_PAGES.fullmatch(p.name)]
            self.settings_file.check(fixed, JOURNAL)
            self.journal.load()
        except BaseException as exc:
            self._lock.release()
            if isinstance(exc, OSError):  # a full disk while repairing the journal, say
                raise _write_error(exc, self.outdir) from None
            raise
        for number, problem in self.journal.set_aside:
            self.warnings.append(
                line_warning(self.outdir / JOURNAL, number, problem, f"set aside in {ASIDE}, its image is redone")
            )
        self._names = naming.OutputNames(
            self.outdir,
            self.journal.owner(),
            self._protected,
            crops=self.crops,
            heatmaps=self.heatmaps,
            in_place=self.options.in_place,
            maps=self.maps,
        )

    def done(self, item: ImageItem) -> bool:
        """Whether ``item`` was fully processed with these settings and its source file has not changed."""

        def complete(record: Json) -> bool:
            return all(
                record[key] and (self.outdir / record[key]).is_file()
                for key, wanted in (("crop", self.crops), ("heatmap", self.heatmaps), ("map", self.maps))
                if wanted
            )

        return self.journal.done(item, self.expected_boxes, complete)

    @property
    def records(self) -> Iterator[Json]:
        """Every image's records, in order, read back from the journal (one image in memory at a time)."""
        return self.journal.records

    # ---- writing one image

    def _stage(
        self, result: CropResult, names: list[tuple[PurePosixPath | None, PurePosixPath | None, PurePosixPath | None]]
    ) -> _Staged:
        """Encode and write the image's files to temporary names (a pool thread); its records."""
        item = result.item
        staged: list[tuple[str, Path]] = []
        try:
            source = result.source  # the file whose pixels gave the boxes: read again for the crops only if unchanged
            if source is None:
                source = Source.of(item.path.stat())
            original = open_upright(item.path, expect=source) if self.crops or self.heatmaps else None
            if original is not None and (original.height, original.width) != result.size:
                raise FcnxError("the file changed while it was being processed", item.path)
            records = []
            for box, (crop, heatmap, score_map) in zip(result.boxes, names):
                records.append(_record(result, box, source, (crop, heatmap, score_map)))
                if score_map is not None:
                    data = encode_map(box, result.size)
                    staged.append((stage_bytes(self.outdir / score_map, data), self.outdir / score_map))
                if crop is not None:
                    assert original is not None
                    pixels = geometry.pixel_box((box.x, box.y, box.w, box.h), result.size)
                    data = encode_crop(original, pixels, self.outdir / crop)
                    staged.append((stage_bytes(self.outdir / crop, data), self.outdir / crop))
                if heatmap is not None:
                    from fcnx.render.heatmaps import heatmap_overlay

                    assert original is not None
                    picture = heatmap_overlay(to_rgb(original), box, self.kernel, self.stride)
                    staged.append((stage_bytes(self.outdir / heatmap, encode_png(picture)), self.outdir / heatmap))
            return _Staged(records, staged)
        except BaseException:
            for tmp, _ in staged:
                os.unlink(tmp)
            raise

    def submit(self, result: CropResult) -> list[Outcome]:
        """Queue ``result``'s files for writing; returns the images finished meanwhile.

        A full disk is the error (:class:`DiskFull`) of the image it hit; the images queued after it
        are dropped unwritten (a rerun does them) and so is every later one: stop the run.
        """
        if self.full is not None:
            return [Outcome(result, error=self.full)]
        several = len(result.boxes) > 1
        categories = [box.category if several else None for box in result.boxes]
        names = self._names.reserve(str(result.item.path), result.item.rel, categories)
        return self._settle(self._pool.submit(result, lambda: self._stage(result, names)))

    def flush(self) -> list[Outcome]:
        """Wait for every queued image; returns them as :meth:`submit` does."""
        return self._settle(self._pool.drain())

    def _settle(self, finished: list[tuple[CropResult, _Staged | Exception]]) -> list[Outcome]:
        outcomes = []
        for result, staged in finished:
            if self.full is not None:  # dropped: written by the next run
                if isinstance(staged, _Staged):
                    for tmp, _ in staged.files:
                        os.unlink(tmp)
                continue
            try:
                if isinstance(staged, Exception):
                    raise staged
                self._put_in_place(staged)
            except (FcnxError, OSError) as exc:
                error = _write_error(exc, result.item.path)
                if isinstance(error, DiskFull):
                    self.full = error
                outcomes.append(Outcome(result, error=error))
                continue
            outcomes.append(Outcome(result, records=staged.records))
        return outcomes

    def _put_in_place(self, staged: _Staged) -> None:
        """Journal the records (one write), then rename the files into place."""
        try:
            self.journal.append(staged.records)
        except BaseException:
            for tmp, _ in staged.files:
                os.unlink(tmp)
            raise
        waiting = list(staged.files)
        try:
            while waiting:
                commit(*waiting[0])
                waiting.pop(0)
        except OSError:
            for tmp, _ in waiting[1:]:
                os.unlink(tmp)
            self.journal.forget(staged.records[0].path)  # redone by the next run
            raise

    # ---- the end of a run

    def finish(self, failures: Iterable[str], order: Sequence[ImageItem] = ()) -> list[str]:
        """Write the pending images, compact the journal, write the table, gallery, failure list and dataset lists.

        ``order``: the run's images in input order. The journal is rewritten in that order if images
        completed in another (batches by size, a resumed run, several Ray actors), so a complete
        run's ``boxes.jsonl`` is the same whatever the engine; images of earlier runs not in
        ``order`` stay first. Returns the error lines of what could not be written (a full disk is
        reported once: not again if an image met it); the lock is released in any case.
        """
        errors: list[str] = []
        try:  # the lock is released even if a step fails otherwise than with an OSError
            self.flush()  # the images in flight (a stopped run)
            self._pool.close()
            steps: list[tuple[str, Callable[[], None]]] = [
                (JOURNAL, lambda: self.journal.compact(str(item.path) for item in order)),
                (TABLE, lambda: reports.write_table(self.outdir, _indexed(self), self.net_names)),
                (FAILURES, lambda: reports.write_failures(self.outdir, list(failures))),
            ]
            if self.options.gallery:
                steps.append(
                    (
                        GALLERY,
                        lambda: reports.write_gallery(
                            self.outdir, self.records, self.journal.count, self.settings_file.claim
                        ),
                    )
                )
            if self.meta_copies:
                steps.append(("dataset lists", lambda: reports.copy_meta(self.outdir, self.meta_copies)))
            for name, step in steps:
                try:
                    step()
                except OSError as exc:
                    error = _write_error(exc, self.outdir / name)
                    if isinstance(error, DiskFull):
                        if self.full is not None:
                            continue
                        self.full = error
                    errors.append(str(error))
        finally:
            self.close()
        return errors

    def close(self) -> None:
        """Stop the writing threads and release OUTDIR."""
        self._pool.close()
        self._lock.release()


def _indexed(outputs: CropOutputs) -> Iterator[Json]:
    """The run's records read back for its table; once all are read, ``fcnx review``'s index of the run is kept."""
    return indexed_records(outputs.outdir, outputs.journal, outputs.outdir / SUSPECTS)


def _record(
    result: CropResult,
    box: Box,
    source: Source,
    files: tuple[PurePosixPath | None, PurePosixPath | None, PurePosixPath | None],
) -> CropRecord:
    """The record of one box of ``result``: the image, the box, its files (crop, heatmap, score map) and source."""
    item = result.item
    crop, heatmap, score_map = (None if f is None else f.as_posix() for f in files)
    return CropRecord(
        path=str(item.path),
        file=item.rel.as_posix(),
        label=item.label,
        width=result.size[1],
        height=result.size[0],
        category=box.category,
        category_index=box.category_index,
        found=box.found,
        votes=box.votes,
        nets=box.nets,
        confidence=box.confidence,
        mean_confidence=box.mean_confidence,
        scale=box.scale,
        level=box.level,
        cell=box.cell,
        scaled_size=box.scaled_size,
        x=box.x,
        y=box.y,
        w=box.w,
        h=box.h,
        x1=box.x1,
        y1=box.y1,
        x2=box.x2,
        y2=box.y2,
        net_scores=dict(box.net_scores),
        net_votes=dict(box.net_votes),
        levels_examined=box.levels_examined,
        stopped_early=box.stopped_early,
        box_kind=box.kind,
        window=box.window,
        tight=box.tight,
        fitted=box.fitted,
        instance=box.instance,
        crop=crop,
        heatmap=heatmap,
        map=score_map,
        source_size=source.size,
        source_mtime_ns=source.mtime_ns,
        guesses=result.guesses,
    )
