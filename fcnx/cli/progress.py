"""The one progress reporter of long commands: a tqdm bar on a terminal, a plain line now and then otherwise."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any, TextIO


class Progress:
    """Count ``total`` items of work named ``desc``.

    On a terminal it draws a tqdm bar; when stderr is a file or a pipe (logs, CI, schedulers) it writes
    ``desc: done/total images, rate img/s, ETA hh:mm:ss`` every ``every`` seconds and at the end, so logs
    stay readable; with ``quiet`` it shows nothing. :meth:`say` prints a line without breaking the bar.
    """

    def __init__(
        self, total: int, desc: str, *, quiet: bool = False, every: float = 30.0, stream: TextIO | None = None
    ) -> None:
        self.total, self.desc, self.quiet, self.every = total, desc, quiet, every
        self.stream = stream or sys.stderr
        self.count, self.start, self.last = 0, time.monotonic(), time.monotonic()
        self.bar: Any = None
        if not quiet and self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="img", desc=desc, file=self.stream, dynamic_ncols=True, smoothing=0.05)

    def update(self, n: int = 1) -> None:
        """``n`` more items done."""
        self.count += n
        if self.bar is not None:
            self.bar.update(n)
        elif not self.quiet and (time.monotonic() - self.last >= self.every or self.count == self.total):
            self.last = time.monotonic()
            print(self.line(), file=self.stream, flush=True)

    def line(self) -> str:
        """The plain progress line."""
        elapsed = time.monotonic() - self.start
        rate = self.count / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.count) / rate if rate > 0 else float("nan")
        eta_text = time.strftime("%H:%M:%S", time.gmtime(eta)) if eta == eta else "?"
        return f"{self.desc}: {self.count}/{self.total} images, {rate:.2f} img/s, ETA {eta_text}"

    def say(self, text: str) -> None:
        """Print ``text`` on its own line (above the bar on a terminal)."""
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
