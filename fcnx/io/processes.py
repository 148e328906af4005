"""How a run's processes stop: on a signal, cleanly; its workers, with it.

:func:`stop_on_signals`: Ctrl-C and ``SIGTERM`` stop a run as an interrupt raised in the main
thread, once; a second signal while the run finishes what it is writing is ignored, so nothing
is left half-written.

A run's helper processes (image-decoding workers of a ``DataLoader``, ``--jobs`` processes) call
:func:`die_with_parent` first: when the parent ends, however it ends (``kill -9`` included), they
end too, instead of decoding for a dead run. On Linux the kernel sends them ``SIGKILL``
(``prctl(PR_SET_PDEATHSIG)``); elsewhere (macOS) a daemon thread watches the parent's pid.
(What they must never hold, the OUTDIR lock, is closed in every forked child: see
:class:`fcnx.io.files.OutdirLock`.)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from fcnx.errors import Terminated

#: ``prctl`` option: the signal a process gets when its parent thread ends (linux/prctl.h)
PR_SET_PDEATHSIG = 1
#: how often the watchdog thread (where there is no parent-death signal) looks at the parent's pid, in seconds
WATCH_INTERVAL = 0.2


def _death_signal() -> bool:
    """Ask the kernel for ``SIGKILL`` when the parent ends; whether it could (Linux only)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        return int(libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(WATCH_INTERVAL)
    os._exit(1)


def die_with_parent(parent: int) -> None:
    """In a child process of ``parent`` (its pid): end this process as soon as the parent ends.

    The Linux signal is tied to the thread that started the child: start workers from a thread
    that lives as long as they are needed (the main thread). A parent that ended before this call
    ends the child at once.
    """
    if not _death_signal():
        threading.Thread(target=_watch, args=(parent,), name="fcnx-parent-watch", daemon=True).start()
    if os.getppid() != parent:  # ended before the signal was asked for
        os._exit(1)


def _init_worker(parent: int, worker_id: int) -> None:
    die_with_parent(parent)


def worker_init() -> Callable[[int], None]:
    """A ``DataLoader`` ``worker_init_fn`` (picklable) that makes each worker die with this process."""
    return functools.partial(_init_worker, os.getpid())


@dataclass
class Stop:
    """What stopped a run: the first ``SIGINT`` or ``SIGTERM`` received (``None``: none yet)."""

    signal: signal.Signals | None = None

    @property
    def exit_code(self) -> int:
        """The shell's status of a process ended by that signal: 130 for Ctrl-C, 143 for ``SIGTERM``."""
        return 128 + (self.signal or signal.SIGINT)


@contextmanager
def stop_on_signals() -> Iterator[Stop]:
    """While active (in the main thread), the first Ctrl-C raises ``KeyboardInterrupt`` and the first ``SIGTERM``
    :class:`~fcnx.errors.Terminated`; later ones are ignored (recorded in the :class:`Stop` yielded), so the
    run's cleanup (tables written, temporaries removed) is never cut short. Outside the main thread it
    changes nothing."""
    stop = Stop()

    def handler(signum: int, frame: Any) -> None:
        if stop.signal is not None:
            return  # already stopping
        stop.signal = signal.Signals(signum)
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    try:
        previous = {signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: signals stay as they are
        yield stop
        return
    try:
        yield stop
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
