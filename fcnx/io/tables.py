"""The one CSV writer of fcnx (``boxes.csv``, ``evaluation.csv``, ``suspects.csv``): safe to open in a spreadsheet.

Text cells are written for people, on one line and without formulas:

- characters that are not printable (newlines, tabs, other control characters) and bytes of file
  names that are not valid UTF-8 are written as backslash escapes (``\\n``, ``\\xff``), so a
  record is always one line and the file always valid UTF-8 (the exact names are in the JSON
  outputs);
- a text cell that starts with ``=``, ``+``, ``-`` or ``@`` gets a leading ``'`` (OWASP's advice
  against CSV injection; tabs and carriage returns, its other two, are escaped already), so a
  spreadsheet shows it as text instead of evaluating it. Numbers are written as they are.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from fcnx.errors import one_line
from fcnx.io.files import atomic_write

#: first characters that make a spreadsheet evaluate a cell (OWASP: CSV injection)
FORMULA_STARTS = ("=", "+", "-", "@")


def cell(value: Any) -> Any:
    """What the table writes for ``value``: ``None`` as empty, text made safe (see the module), numbers as they are."""
    if value is None:
        return ""
    if isinstance(value, str):
        value = one_line(value)
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
