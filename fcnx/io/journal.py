"""Reading a JSON-lines journal (``boxes.jsonl``) that a killed run may have cut short.

``fcnx crop`` appends whole lines, so only the last line can be incomplete: one without a final
newline that is not valid JSON is a write cut by a kill and is dropped. Both ``fcnx crop``
(resuming) and ``fcnx evaluate`` (reading boxes) read journals this way; each decides what a
later record for the same image supersedes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Journal:
    """The lines of a journal: ``(line number, record)``, the record ``None`` for a line that is not a JSON object."""

    lines: list[tuple[int, dict[str, Any] | None]] = field(default_factory=list)
    #: the last line was cut short (no newline, not JSON) and is dropped
    cut: bool = False
    #: the file does not end with a newline (a cut line, or a complete record whose newline is missing)
    unterminated: bool = False


def read_journal(path: Path) -> Journal:
    """The lines of the journal at ``path`` (``OSError`` if it cannot be read)."""
    data = Path(path).read_bytes()
    journal = Journal(unterminated=bool(data) and not data.endswith(b"\n"))
    pieces = data.split(b"\n")
    if not pieces[-1]:
        pieces.pop()
    for number, raw in enumerate(pieces, 1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except ValueError:  # also bad UTF-8
            record = None
        if journal.unterminated and number == len(pieces) and not isinstance(record, dict):
            journal.cut = True
            break
        journal.lines.append((number, record if isinstance(record, dict) else None))
    return journal
