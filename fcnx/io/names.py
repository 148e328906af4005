"""File names as shown in messages: any name on one printable line.

A POSIX file name is any bytes but ``/`` and NUL. Python hands names that are not valid UTF-8 to
us as lone surrogates (``surrogateescape``), which no UTF-8 stream can print, and a name may hold a
newline, which would split a one-line error in two. :func:`shown` escapes both, as Python escapes
strings: ``\\n``, ``\\t``, ``\\x1b``, ``\\u2028``, and ``\\xe9`` for the byte 0xE9 of a Latin-1 name.
Printable characters, non-ASCII letters included, are shown as they are.
"""

from __future__ import annotations

import os
import unicodedata

#: categories escaped: controls (C0, C1, DEL), surrogates, line and paragraph separators
_ESCAPED = frozenset({"Cc", "Cs", "Zl", "Zp"})
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(char: str) -> str:
    code = ord(char)
    if char in _NAMED:
        return _NAMED[char]
    if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8, as os.fsdecode carries it
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def shown(value: object) -> str:
    """``value`` (a path, a file name in bytes, any text) on one printable line: controls and undecodable bytes escaped."""
    text = os.fsdecode(value) if isinstance(value, (bytes, os.PathLike)) else str(value)
    if text.isprintable():  # the common case, and fast
        return text
    return "".join(_escape(c) if unicodedata.category(c) in _ESCAPED else c for c in text)
