"""An output folder that a killed run resumes, as ``fcnx crop``'s does: ``fcnx evaluate -o`` and ``fcnx suspects``.

The folder is locked for one run (:class:`~fcnx.io.files.OutdirLock`), a killed run's temporaries
are removed, the settings its results were made with are checked and its fixed-name outputs claimed
(:class:`~fcnx.jobs.outdir.settings.SettingsFile`), and each image's result is appended to a journal as soon
as it is known: one line with its source ``path``, written and flushed in one go
(:func:`~fcnx.io.journal.append_lines`). A rerun reads the journal back and does only the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from fcnx.errors import UsageError
from fcnx.io.files import OutdirLock, atomic_bytes, remove_temporaries, writing
from fcnx.io.journal import append_lines, dump_line, read_journal
from fcnx.io.record import Json
from fcnx.jobs.outdir.settings import SettingsFile


class ResumeJournal:
    """The journal ``journal`` of ``outdir`` for a run of ``command`` (``fcnx evaluate``) with ``settings``.

    ``outputs``: the fixed-name files the run writes (the journal is claimed with them); ``valid``:
    whether a record read back is a whole result (others are dropped, their images done again).
    """

    def __init__(
        self,
        outdir: Path,
        command: str,
        journal: str,
        settings: dict[str, Any],
        outputs: Sequence[str],
        valid: Callable[[Json], bool],
    ) -> None:
        self.outdir, self.path, self.valid = outdir, outdir / journal, valid
        self.lock = OutdirLock(outdir, command)
        self.settings = SettingsFile(outdir, settings, f".{command.replace(' ', '-')}.json", command, "results")
        self.outputs = [*outputs, journal]
        #: the latest whole record of each image done, by source path
        self.done: dict[str, Json] = {}
        #: non-fatal findings of :meth:`open` (lines dropped)
        self.warnings: list[str] = []

    def open(self) -> ResumeJournal:
        """Lock the folder, remove temporaries, check the settings, read what is done (see the module)."""
        self.lock.acquire()
        try:
            with writing(self.outdir):
                remove_temporaries(self.outdir)
                self.settings.check(self.outputs, self.path.name)
                self._read()
        except BaseException:
            self.lock.release()
            raise
        return self

    def _read(self) -> None:
        if not self.path.exists():
            return
        try:
            journal = read_journal(self.path)
        except OSError as exc:
            raise UsageError(f"cannot read the journal ({exc.strerror or exc}): move it away", self.path) from None
        dropped = 0
        for _, record in journal.lines:
            if record is not None and isinstance(record.get("path"), str) and self.valid(record):
                self.done[record["path"]] = record
            else:
                dropped += 1
        if dropped:
            self.warnings.append(f"{self.path}: {dropped} line(s) are not whole results, their images are done again")
        if dropped or journal.unterminated or len(self.done) < len(journal.lines):
            self._rewrite()

    def _rewrite(self) -> None:
        atomic_bytes(self.path, b"".join(dump_line(r) for r in self.done.values()))

    def add(self, record: Json) -> None:
        """Journal one image's result (``record["path"]`` its source path)."""
        with writing(self.outdir):
            append_lines(self.path, dump_line(record))
        self.done[record["path"]] = record

    def compact(self, order: Iterable[str]) -> None:
        """Rewrite the journal in ``order`` (source paths; images not in it first) if its images were done in
        another (by worker processes), so that a finished run's journal is the same whatever the processes."""
        rank = {key: k for k, key in enumerate(order)}
        keys = sorted(self.done, key=lambda key: rank.get(key, -1))
        if keys != list(self.done):
            self.done = {key: self.done[key] for key in keys}
            with writing(self.outdir):
                self._rewrite()

    def close(self) -> None:
        """Release the folder."""
        self.lock.release()
