"""Real runs of the CLI in a subprocess (the tiny registry's nets), for kills, signals and locks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

TESTS = Path(__file__).parent
#: the environment of such runs: one thread each (the machine is shared)
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def fcnx_command(*args: object) -> list[str]:
    """``fcnx ARGS`` in a new Python process, with the tiny nets (and the trainable tiny net) registered."""
    code = (
        "import sys; sys.path.insert(0, sys.argv.pop(1)); import tiny_backbones, tiny_train_backbone; "
        "tiny_backbones.register(); tiny_train_backbone.register(); sys.argv[0] = 'fcnx'; "
        "from fcnx.cli import main; main()"
    )
    return [sys.executable, "-c", code, str(TESTS), *map(str, args)]


def start(*args: object) -> subprocess.Popen:
    """``fcnx ARGS`` started in a subprocess (stderr piped)."""
    return subprocess.Popen(fcnx_command(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)


def run(*args: object, timeout: float = 300) -> subprocess.CompletedProcess:
    """``fcnx ARGS`` run to its end in a subprocess (text output)."""
    return subprocess.run(fcnx_command(*args), capture_output=True, text=True, timeout=timeout, env=ENV)


def wait_until(process: subprocess.Popen, ready: Callable[[], bool], what: str, seconds: float = 120) -> None:
    """Wait until ``ready()``; fail if ``process`` ends or ``seconds`` pass first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        if ready():
            return
        time.sleep(0.02)
    raise AssertionError(f"the run ended or stalled before {what}: {process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]


def lines(path: Path) -> int:
    """Whole lines in ``path`` (0 if it does not exist)."""
    return path.read_bytes().count(b"\n") if path.exists() else 0


def children(pid: int) -> list[int]:
    """The pids of ``pid``'s child processes (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` is a process that still runs (a zombie waiting to be reaped does not)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def catches(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has a handler for ``signum`` (``SigCgt`` in /proc): its command is running."""
    try:
        status = (Path("/proc") / str(pid) / "status").read_text()
    except OSError:
        return False
    mask = next(int(line.split()[1], 16) for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(mask >> (signum - 1) & 1)
