"""The one CSV writer of fcnx (``boxes.csv``, ``evaluation.csv``, ``suspects.csv``): safe to open in a spreadsheet.

Text cells are written as they are, so that a program reading a path from the table opens that file:

- every character is written as itself (a cell holding a newline, a quote or a comma is quoted, as
  CSV does), except the bytes of file names that are not valid UTF-8, which no UTF-8 file can
  hold: those are written as backslash escapes (``\\xff``; the exact names are in the JSON outputs);
- a text cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading
  ``'`` (OWASP's advice against CSV injection), so a spreadsheet shows it as text instead of
  evaluating it. Nothing else is altered; numbers are written as they are.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from fcnx.io.files import atomic_write

#: first characters that make a spreadsheet evaluate a cell (OWASP: CSV injection)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def utf8_text(text: str) -> str:
    """``text`` with the undecodable bytes of a file name (lone surrogates) as ``\\xff`` escapes, else unchanged."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that stands for no byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def cell(value: Any) -> Any:
    """What the table writes for ``value``: ``None`` as empty, text made safe (see the module), numbers as they are."""
    if value is None:
        return ""
    if isinstance(value, str):
        value = utf8_text(value)
        return "'" + value if value.startswith(FORMULA_STARTS) else value
    return value


def _write_rows(out: Any, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    writer = csv.writer(out)
    writer.writerow([cell(c) for c in columns])
    for row in rows:
        writer.writerow([cell(row.get(c)) for c in columns])


def csv_bytes(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> bytes:
    """A header and one line per row (missing keys empty), as UTF-8 CSV with the csv module's ``\\r\\n`` lines."""
    buffer = io.StringIO()
    _write_rows(buffer, columns, rows)
    return buffer.getvalue().encode("utf-8")


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write the table of ``rows`` under ``columns`` to ``path`` atomically, the bytes of :func:`csv_bytes`,
    a row at a time (``rows`` may be a generator: the table is never whole in memory)."""
    return atomic_write(path, lambda f: _write_rows(f, columns, rows), mode="w")
