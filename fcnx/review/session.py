"""One review of an OUTDIR: its lock, its ``review.jsonl`` and each image's state, updated as decisions arrive.

A :class:`Session` holds ``OUTDIR/.fcnx-review-lock`` (a second ``fcnx review`` is refused, naming the
first; ``fcnx crop``'s own lock is another file), replays ``review.jsonl`` (:func:`~fcnx.io.replayed.replay`:
the kept replay and the lines appended since, else the whole file, after setting aside what a kill or a hand
edit left in it), lists and skips decisions for images the run no longer has (or whose file is gone), reads
an image's decisions when its state is first asked for, and appends each new decision at once, before its
state changes.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fcnx.errors import UsageError, one_line
from fcnx.io.decisions import (
    REASONS,
    REJECTED,
    REVIEW,
    VERSION,
    Decision,
    Merged,
    append_decision,
    decision_problem,
    from_dict,
    is_reviewer_name,
    merge,
    now,
    read_decisions,
    repair_decisions,
)
from fcnx.io.files import OutdirLock
from fcnx.io.journal import append_lines, dump_line
from fcnx.io.replayed import Replay, replay
from fcnx.review.index import STATE_OF, Index

#: the lock file ``fcnx review`` holds in OUTDIR
REVIEW_LOCK = ".fcnx-review-lock"
#: decisions of images the run no longer has: how many are named one by one
SHOWN_MISSING = 5


class Session:
    """The review of ``index`` by ``reviewer``: :meth:`open` it (lock, read decisions), :meth:`decide`, :meth:`close`."""

    def __init__(self, index: Index, reviewer: str) -> None:
        if not is_reviewer_name(reviewer):
            raise UsageError(f"{reviewer!r} is not a name of 1-64 printable characters", parameter="reviewer")
        self.index, self.reviewer = index, reviewer
        self.path = index.outdir / REVIEW
        #: the secret every write request carries (no request forgery from another page of the browser)
        self.token = secrets.token_urlsafe(32)
        #: names this server's run in image URLs, so that the browser may keep the images it showed: an image's
        #: number means another image in another run (boxes.jsonl rewritten), never under the same name
        self.instance = secrets.token_hex(8)
        #: findings of :meth:`open`: lines set aside, decisions for images not in the run
        self.warnings: list[str] = []
        self._lock = OutdirLock(index.outdir, "fcnx review", REVIEW_LOCK)
        self._write = threading.Lock()
        self._replay: Replay | None = None
        #: items whose file is gone: their earlier decisions are skipped
        self._gone: set[int] = set()
        #: per item read so far, its decisions in force (read from ``review.jsonl`` when first asked) and merged
        self._decisions: dict[int, list[Decision]] = {}
        self._merged: dict[int, Merged] = {}

    def __enter__(self) -> Session:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Lock OUTDIR and load ``review.jsonl`` (see the module's docstring)."""
        self._lock.acquire()
        index = self.index
        try:
            state, log = replay(self.path, len(index), index.columns.sources, index.find_all, index.path)
        except OSError as exc:
            self._lock.release()
            raise UsageError(f"cannot read or repair ({exc.strerror or exc})", self.path) from None
        for number, problem in log.set_aside:
            self.warnings.append(f"{self.path}:{number}: not a decision ({problem}); set aside in {REJECTED}")
        if log.cut:
            self.warnings.append(f"{self.path}: its last line was cut short (a kill); set aside in {REJECTED}")
        gone = state.gone
        self._replay, self._gone = state, set(gone)
        gone_counts = {index.path(k): int(state.count[k]) for k in gone}
        for skipped, why in ((state.missing, "this run does not have"), (gone_counts, "whose file is gone")):
            if skipped:
                names = ", ".join(one_line(p) for p in list(skipped)[:SHOWN_MISSING])
                more = f" and {len(skipped) - SHOWN_MISSING} more" if len(skipped) > SHOWN_MISSING else ""
                self.warnings.append(
                    f"{self.path}: {sum(skipped.values())} decision(s) for {len(skipped)} image(s) {why}, "
                    f"skipped (kept in the file): {names}{more}"
                )
        index.state[:] = state.state
        index.disputed[:] = state.disputed
        index.state[gone], index.disputed[gone] = 0, False
        index.version += 1

    def close(self) -> None:
        self._lock.release()

    def _decisions_of(self, k: int) -> list[Decision]:
        """Item ``k``'s decisions in force (those of an image whose file was gone on opening are skipped)."""
        if k not in self._decisions:
            assert self._replay is not None
            skipped = k in self._gone or not self._replay.count[k]
            self._decisions[k] = [] if skipped else self._replay.decisions(self.path, k)
        return self._decisions[k]

    def _merge(self, k: int) -> Merged:
        """Item ``k``'s decisions merged (kept until it gets another)."""
        if k not in self._merged:
            self._merged[k] = merge([self._decisions_of(k)])
        return self._merged[k]

    def state(self, k: int) -> dict[str, Any]:
        """Item ``k``'s review state: its verdict (or ``None``), the reviewers who disagree, its decision count."""
        merged, path = self._merge(k), self.index.path(k)
        verdict = merged.verdicts.get(path)
        return {
            "verdict": None if verdict is None else asdict(verdict),
            "disagreement": merged.disagreements.get(path),
            "decisions": len(self._decisions_of(k)),
        }

    def decide(
        self,
        k: int,
        action: str,
        *,
        reason: str | None = None,
        label: str | None = None,
        box: Sequence[float] | None = None,
    ) -> Decision:
        """Append the reviewer's ``action`` on item ``k`` to ``review.jsonl``, then update its state.

        A :class:`UsageError` for an unknown item or class, a box outside the image, or a decision
        :func:`~fcnx.io.decisions.decision_problem` refuses; nothing is written then.
        """
        if not 0 <= k < len(self.index):
            raise UsageError(f"no image number {k}")
        item = self.index.item(k)
        if action == "relabel" and label not in self.index.classes:
            raise UsageError(f"{label!r} is not a class of this dataset")
        if action == "reject" and reason not in REASONS:
            raise UsageError(f"a reject needs a reason: one of {', '.join(REASONS)}")
        record = {
            "v": VERSION,
            "path": item.path,
            "action": action,
            "reviewer": self.reviewer,
            "at": now(),
            "label": label,
            "reason": reason,
            "box": list(box) if isinstance(box, list | tuple) else box,
        }
        problem = decision_problem(record)
        if problem is not None:
            raise UsageError(f"not a valid decision: {problem}")
        decision = from_dict(record)
        if decision.box is not None and item.size is not None:
            x, y, w, h = decision.box
            if x + w > item.size[0] + 0.5 or y + h > item.size[1] + 0.5:
                raise UsageError(f"box {record['box']} leaves the {item.size[0]}x{item.size[1]} image")
        with self._write:
            decisions = self._decisions_of(k)
            append_decision(self.path, decision)
            decisions.append(decision)
            merged = self._merged[k] = merge([decisions])
            verdict = merged.verdicts.get(item.path)
            self.index.state[k] = STATE_OF[None if verdict is None else verdict.action]
            self.index.disputed[k] = item.path in merged.disagreements
            self.index.version += 1
        return decision


def merge_files(outdir: Path, files: Sequence[Path]) -> tuple[list[str], Merged]:
    """Append to ``outdir/review.jsonl`` the decisions of other reviewers' ``files`` it lacks (merging twice adds
    nothing), under the review lock; returns one line per file (and per line set aside) and the merged state."""
    target = outdir / REVIEW
    lines: list[str] = []
    with OutdirLock(outdir, "fcnx review --merge", REVIEW_LOCK):
        own = repair_decisions(target).decisions
        have = set(own)
        for file in files:
            try:
                log = read_decisions(file)
            except OSError as exc:
                raise UsageError(f"cannot read ({exc.strerror or exc})", file) from None
            lines += [f"{file}:{number}: not a decision ({problem}); skipped" for number, problem in log.set_aside]
            new = [d for d in log.decisions if d not in have]
            append_lines(target, b"".join(dump_line(d.as_dict()) for d in new))
            have.update(new)
            own += new
            lines.append(f"{file}: {len(new)} decision(s) merged, {len(log.decisions) - len(new)} already there")
    return lines, merge([own])
