"""Reviewers' decisions ``review.jsonl``: one JSON line per action, appended at once, never rewritten.

``fcnx review`` appends a :class:`Decision` the moment a reviewer acts; ``fcnx apply`` and the
Label Studio import read them back. A line is one action on one image, keyed by the image's
source ``path`` exactly as ``boxes.jsonl`` (or ``suspects.csv``) names it, never by position::

    {"v": 1, "path": "images/pizza/1.jpg", "action": "relabel", "label": "lasagna",
     "reason": null, "box": null, "at": "2026-12-07T15:20:01.123456+00:00", "reviewer": "ana"}

Actions (:data:`ACTIONS`): ``accept`` (the crop is right; ``box`` set where the reviewer adjusted it),
``box`` (the box adjusted, no verdict yet), ``reject`` (with a :data:`REASONS` reason), ``relabel`` (``label``:
the image's class), ``undo`` (takes back that reviewer's latest action on the image that is not
itself undone). Boxes are ``[x, y, w, h]`` in upright original-image pixels (EXIF orientation applied).

Reading (:func:`read_decisions`) tolerates what a kill or a hand edit leaves: a cut last line is
dropped, a line that is not a whole decision is set aside with its line number and why
(:func:`repair_decisions` moves such lines to ``review.rejected.jsonl`` before a writer appends); several
reviewers' files merge with :func:`merge` (per image, the latest decision wins; images on which the
reviewers' final verdicts differ are listed).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fcnx.io.files import atomic_bytes, read_regular
from fcnx.io.journal import append_lines, dump_line, read_journal

#: the file name inside OUTDIR
REVIEW = "review.jsonl"
#: lines of ``review.jsonl`` that are not whole decisions, set aside by :func:`repair_decisions`
REJECTED = "review.rejected.jsonl"
#: the schema version written in each line (``v``)
VERSION = 1
#: what a reviewer can do to one image
ACTIONS = ("accept", "box", "reject", "relabel", "undo")
#: why an image is rejected: its label is wrong (no class named), it shows none of the dataset's classes,
#: it is unusable (blurred, a collage, text) -- these three leave it out of the cleaned dataset --, or only
#: its crop is wrong (``crop``: the original is kept, uncropped, with its label)
REASONS = ("wrong_label", "not_category", "unusable", "crop")
_REVIEWER = re.compile(r"[^\x00-\x1f\x7f]{1,64}")


@dataclass(frozen=True)
class Decision:
    """One reviewer's action on one image (see the module's docstring for each field)."""

    path: str
    action: str
    reviewer: str
    at: str
    label: str | None = None
    reason: str | None = None
    box: tuple[float, float, float, float] | None = None

    def as_dict(self) -> dict[str, Any]:
        data = {"v": VERSION, **asdict(self)}
        data["box"] = list(self.box) if self.box is not None else None
        return data


def now() -> str:
    """The current time as ISO 8601 in UTC, as decisions record it."""
    return datetime.now(UTC).isoformat()


def decision_problem(record: Any) -> str | None:
    """Why ``record`` (a parsed JSON line) is not a whole decision (``None`` when it is)."""
    if not isinstance(record, dict):
        return "not a JSON object"
    if record.get("v") != VERSION:
        return f"schema version {record.get('v')!r} is not {VERSION}"
    for key in ("path", "action", "reviewer", "at"):
        if not isinstance(record.get(key), str) or not record[key]:
            return f"field {key!r} is missing or not a non-empty string"
    action = record["action"]
    if action not in ACTIONS:
        return f"action {action!r} is not one of {', '.join(ACTIONS)}"
    if not is_reviewer_name(record["reviewer"]):
        return "field 'reviewer' is not a name of 1-64 printable characters"
    try:
        datetime.fromisoformat(record["at"])
    except ValueError:
        return f"field 'at' is not an ISO 8601 time ({record['at'][:40]!r})"
    label, reason, box = record.get("label"), record.get("reason"), record.get("box")
    if (action == "relabel") != (isinstance(label, str) and bool(label)):
        return "a relabel (and only a relabel) names a non-empty 'label'"
    if (action == "reject") != (reason in REASONS):
        return f"a reject (and only a reject) gives a 'reason' of {', '.join(REASONS)}"
    if box is not None or action == "box":
        if action not in ("accept", "box"):
            return f"a {action} carries no 'box'"
        if not _is_box(box):
            return "field 'box' is not [x, y, w, h] of finite numbers with w, h > 0 and x, y >= 0"
    return None


def is_reviewer_name(name: str) -> bool:
    """Whether ``name`` can be a decision's ``reviewer``: 1-64 characters, none of them a control character."""
    return _REVIEWER.fullmatch(name) is not None


def _is_box(box: Any) -> bool:
    if not isinstance(box, list) or len(box) != 4:
        return False
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in box):
        return False
    return box[0] >= 0 and box[1] >= 0 and box[2] > 0 and box[3] > 0


def from_dict(record: dict[str, Any]) -> Decision:
    """A :class:`Decision` from a record :func:`decision_problem` accepts."""
    box = record.get("box")
    return Decision(
        path=record["path"],
        action=record["action"],
        reviewer=record["reviewer"],
        at=record["at"],
        label=record.get("label"),
        reason=record.get("reason"),
        box=None if box is None else (float(box[0]), float(box[1]), float(box[2]), float(box[3])),
    )


def append_decision(path: Path, decision: Decision) -> None:
    """Append one decision as one flushed write of a whole line (on failure the file is as it was)."""
    problem = decision_problem(decision.as_dict())
    if problem is not None:
        raise ValueError(f"not a valid decision: {problem}")
    append_lines(path, dump_line(decision.as_dict()))


@dataclass
class DecisionLog:
    """The decisions read from one ``review.jsonl``, in file order, and the lines set aside."""

    decisions: list[Decision] = field(default_factory=list)
    #: ``(line number, why)`` of each line that is not a whole decision
    set_aside: list[tuple[int, str]] = field(default_factory=list)
    #: the last line was cut short by a kill (no newline, not JSON) and is dropped
    cut: bool = False


def read_decisions(path: Path) -> DecisionLog:
    """The decisions in ``path`` (``OSError`` if it cannot be read or is not a regular file)."""
    journal = read_journal(path)
    log = DecisionLog(cut=journal.cut)
    for number, record in journal.lines:
        problem = decision_problem(record)
        if problem is None:
            assert record is not None
            log.decisions.append(from_dict(record))
        else:
            log.set_aside.append((number, problem))
    return log


def repair_decisions(path: Path) -> DecisionLog:
    """:func:`read_decisions` of ``path`` (an empty log if there is none), then, if it holds lines that are not
    whole decisions or a cut last line, move those lines to :data:`REJECTED` beside it (appended) and rewrite
    ``path`` without them (atomically), so that the next append starts a line of its own."""
    if not path.exists():
        return DecisionLog()
    data = read_regular(path)
    log = read_decisions(path)
    if not log.set_aside and not log.cut and (not data or data.endswith(b"\n")):
        return log
    lines = data.split(b"\n")
    if not lines[-1]:
        lines.pop()
    bad = {number for number, _ in log.set_aside} | ({len(lines)} if log.cut else set())
    kept = [line + b"\n" for number, line in enumerate(lines, 1) if number not in bad and line.strip()]
    append_lines(path.parent / REJECTED, b"".join(lines[number - 1] + b"\n" for number in sorted(bad)))
    atomic_bytes(path, b"".join(kept))
    return log


def effective(decisions: Iterable[Decision]) -> list[Decision]:
    """The decisions still in force, in order: each ``undo`` removes its reviewer's latest undone action on the image."""
    kept: list[Decision] = []
    for decision in decisions:
        if decision.action != "undo":
            kept.append(decision)
            continue
        for k in range(len(kept) - 1, -1, -1):
            if kept[k].path == decision.path and kept[k].reviewer == decision.reviewer:
                del kept[k]
                break
    return kept


@dataclass(frozen=True)
class Verdict:
    """What the decisions in force say of one image: its verdict (the latest of accept/reject/relabel),
    its box (the latest adjusted box, if any) and the label it keeps (a relabel's, else ``None``)."""

    path: str
    action: str | None
    reason: str | None = None
    label: str | None = None
    box: tuple[float, float, float, float] | None = None
    reviewer: str | None = None
    at: str | None = None


def verdicts(decisions: Iterable[Decision]) -> dict[str, Verdict]:
    """Per image, the merged state of the decisions in force (in the order they are given: latest wins)."""
    state: dict[str, dict[str, Any]] = {}
    for d in effective(decisions):
        s = state.setdefault(d.path, {"path": d.path, "action": None})
        if d.box is not None:
            s["box"] = d.box
        if d.action == "relabel":
            s["label"] = d.label
        if d.action in ("accept", "reject", "relabel"):
            s.update(action=d.action, reason=d.reason, reviewer=d.reviewer, at=d.at)
    return {path: Verdict(**s) for path, s in state.items()}


@dataclass(frozen=True)
class Merged:
    """Several reviewers' decisions merged: per image its verdict, and the images they disagree on."""

    verdicts: dict[str, Verdict]
    #: per image on which reviewers' final verdicts differ: each reviewer's verdict
    disagreements: dict[str, dict[str, str]]


def _verdict_text(v: Verdict) -> str:
    return {"reject": f"reject ({v.reason})", "relabel": f"relabel to {v.label}"}.get(v.action or "", v.action or "-")


def merge(logs: Sequence[Sequence[Decision]]) -> Merged:
    """Merge decision lists (one per file): per image the latest decision by time wins (file order breaks ties)."""
    indexed = [(datetime.fromisoformat(d.at), n, k, d) for n, log in enumerate(logs) for k, d in enumerate(log)]
    ordered = [d for *_, d in sorted(indexed, key=lambda t: (_utc(t[0]), t[1], t[2]))]
    disagreements: dict[str, dict[str, str]] = {}
    per_reviewer: dict[str, dict[str, str]] = {}
    reviewers = {d.reviewer for d in ordered}
    for reviewer in reviewers if len(reviewers) > 1 else ():  # one reviewer never disagrees with itself
        for path, v in verdicts(d for d in ordered if d.reviewer == reviewer).items():
            if v.action is not None:
                per_reviewer.setdefault(path, {})[reviewer] = _verdict_text(v)
    for path, seen in per_reviewer.items():
        if len(set(seen.values())) > 1:
            disagreements[path] = dict(sorted(seen.items()))
    return Merged(verdicts(ordered), dict(sorted(disagreements.items())))


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
