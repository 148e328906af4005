"""Errors that reach the user as one line, never as a traceback, and :func:`one_line`, which keeps them so.

A POSIX file name is any bytes but ``/`` and NUL. Python hands names that are not valid UTF-8 to
us as lone surrogates (``surrogateescape``), which no UTF-8 stream can print, and a name may hold a
newline, which would split a one-line error in two, or a terminal escape. :func:`one_line` is the
one function that shows a name (or any text) in a message, a table or a page.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Sequence


def one_line(text: object) -> str:
    """``text`` (text, a path, a file name in bytes) as one printable line.

    Every character that is not printable (controls, line separators, bidirectional overrides) is
    escaped as Python escapes it (``\\n``, ``\\x1b``, ``\\u2028``, ``\\u202e``), a byte of a file name that
    is not UTF-8 as ``\\xe9``; printable characters, non-ASCII letters included, are kept.
    """
    text = os.fsdecode(text) if isinstance(text, (bytes, os.PathLike)) else str(text)
    if text.isprintable():  # the common case, and fast
        return text
    out = []
    for char in text:
        if char.isprintable():
            out.append(char)
        elif "\udc80" <= char <= "\udcff":
            out.append(f"\\x{ord(char) - 0xDC00:02x}")
        else:
            out.append(char.encode("unicode_escape").decode("ascii"))
    return "".join(out)


def reason(exc: BaseException) -> str:
    """The first line of what ``exc`` says (its type's name when it says nothing), for a one-line error."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class FcnxError(Exception):
    """A user-facing error: the CLI prints ``Error: <message>`` and exits with ``exit_code``.

    ``path`` is the file the error is about (the message starts with it); ``parameter`` the library
    argument that was wrong, which the CLI names by its option (``half`` -> ``--half: ...``). The
    text is always one printable line: control characters and undecodable bytes of file names (and
    of the message) are escaped by :func:`one_line`.
    """

    exit_code = 1

    def __init__(self, message: str, path: object | None = None, *, parameter: str | None = None) -> None:
        self.path = path
        self.parameter = parameter
        super().__init__(one_line(f"{path}: {message}" if path is not None else message))


class UsageError(FcnxError):
    """Bad names or options given by the user (exit code 2, like click's own usage errors)."""

    exit_code = 2


class Terminated(KeyboardInterrupt):
    """``SIGTERM`` turned into an interrupt: a run stops as it does on Ctrl-C (:func:`fcnx.io.processes.stop_on_signals`)."""


class WeightsError(FcnxError):
    """A weight file that cannot be loaded into the backbone it was given for."""


def did_you_mean(word: str, choices: Iterable[str], n: int = 3, first: Sequence[str] = ()) -> str:
    """Return ``" (did you mean: a, b?)"`` for ``first`` (what ``word`` names, e.g. both ``crane (n...)``
    classes), then the closest other choices, or ``""`` when there are none."""
    close = [c for c in difflib.get_close_matches(word, list(choices), n=n + len(first), cutoff=0.6) if c not in first]
    shown = [*first, *close[: max(0, n - len(first))]]
    return f" (did you mean: {', '.join(shown)}?)" if shown else ""
