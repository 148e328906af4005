"""Worker processes that never outlive the run that started them.

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
from collections.abc import Callable

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
