"""Errors that reach the user as one line, never as a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class FcnxError(Exception):
    """A user-facing error: the CLI prints ``Error: <message>`` and exits with ``exit_code``.

    ``path`` is the file the error is about (the message starts with it); ``parameter`` the library
    argument that was wrong, which the CLI names by its option (``half`` -> ``--half: ...``).
    """

    exit_code = 1

    def __init__(self, message: str, path: object | None = None, *, parameter: str | None = None) -> None:
        self.path = path
        self.parameter = parameter
        super().__init__(f"{path}: {message}" if path is not None else message)


class UsageError(FcnxError):
    """Bad names or options given by the user (exit code 2, like click's own usage errors)."""

    exit_code = 2


class WeightsError(FcnxError):
    """A weight file that cannot be loaded into the backbone it was given for."""


def did_you_mean(word: str, choices: Iterable[str], n: int = 3) -> str:
    """Return ``" (did you mean: a, b?)"`` for the closest choices, or ``""`` when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=n, cutoff=0.6)
    return f" (did you mean: {', '.join(close)}?)" if close else ""
