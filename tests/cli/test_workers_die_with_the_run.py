"""A killed run's helper processes never keep its OUTDIR locked nor outlive it (issue 31, item 1).

Real processes throughout: a script that takes the lock or starts a child, then a real ``fcnx crop``
with decoding workers killed with ``kill -9`` and rerun at once.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from image_corpus import square
from process_helpers import ENV, alive, children, lines, run, start, wait_until
from tiny_backbones import color_checkpoint

from fcnx.io.files import OutdirLock

NETS = ["tiny0", "tiny43"]


def _script(body: str, *args: object) -> subprocess.Popen:
    """Run ``body`` (Python) in a new process; it prints pids on stdout, one a line."""
    return subprocess.Popen([sys.executable, "-c", body, *map(str, args)], stdout=subprocess.PIPE, text=True, env=ENV)


def _gone(pid: int, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not alive(pid)


def test_a_forked_child_never_holds_the_lock_its_parent_took(tmp_path):
    holder = _script(
        "import os, sys, time; from pathlib import Path; from fcnx.io.files import OutdirLock\n"
        "lock = OutdirLock(Path(sys.argv[1]), 'fcnx crop'); lock.acquire()\n"
        "child = os.fork()\n"
        "if child == 0:\n    time.sleep(60); os._exit(0)\n"
        "print(child, flush=True); time.sleep(60)\n",
        tmp_path,
    )
    child = int(holder.stdout.readline())  # type: ignore[union-attr]
    try:
        with pytest.raises(Exception, match=f"in use by another run \\(fcnx crop, pid {holder.pid} "):
            OutdirLock(tmp_path).acquire()
        holder.kill()
        holder.wait()
        assert alive(child)  # a plain forked child lives on, yet does not hold the lock
        with OutdirLock(tmp_path):
            pass
    finally:
        subprocess.run(["kill", "-9", str(child)], check=False)


@pytest.mark.parametrize("signal_available", [True, False], ids=["death-signal", "watchdog"])
def test_a_child_that_asked_dies_with_its_parent(signal_available):
    parent = _script(
        "import os, sys, time; from fcnx.io import processes\n"
        f"processes._death_signal = (lambda: False) if {not signal_available} else processes._death_signal\n"
        "me = os.getpid(); child = os.fork()\n"
        "if child == 0:\n    processes.die_with_parent(me); print(os.getpid(), flush=True); time.sleep(60); os._exit(0)\n"
        "time.sleep(60)\n"
    )
    child = int(parent.stdout.readline())  # type: ignore[union-attr]
    assert alive(child)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    assert _gone(child, 2.0), "the child outlived its parent"


def test_a_child_whose_parent_ended_before_it_asked_ends_at_once():
    parent = _script(
        "import os, time; from fcnx.io import processes\n"
        "child = os.fork()\n"
        "if child == 0:\n    processes.die_with_parent(os.getppid() + 10**6); time.sleep(60); os._exit(0)\n"
        "print(child, flush=True); time.sleep(60)\n"
    )
    child = int(parent.stdout.readline())  # type: ignore[union-attr]
    try:
        assert _gone(child, 2.0)
    finally:
        parent.kill()
        parent.wait()


@pytest.mark.slow
def test_kill_9_of_crop_frees_its_outdir_at_once_and_leaves_no_worker(tmp_path, tiny_registry):
    weights = {n: color_checkpoint(tmp_path / "weights" / f"{n}.safetensors", n) for n in NETS}
    photos, out = tmp_path / "photos", tmp_path / "out"
    for k in range(60):
        square(photos / f"{k:02d}.png", top=k % 70, left=k % 110)
    args = [
        "crop",
        "--nets",
        ",".join(NETS),
        *[a for n, p in weights.items() for a in ("--weights", f"{n}={p}")],
        "--category",
        "red",
        "--workers",
        "2",
        "--batch-size",
        "1",
        "--max-scale",
        "1.2",
        photos,
        "-o",
        out,
    ]
    process = start(*args)
    wait_until(process, lambda: lines(out / "boxes.jsonl") >= 3, "3 journal lines")
    workers = children(process.pid)
    assert len(workers) >= 2  # the decoding workers (and maybe a helper of the multiprocessing queue)
    process.send_signal(signal.SIGKILL)
    process.wait()
    with OutdirLock(out):  # at once: the workers hold no lock (DataLoader's own watchdog takes up to 5 s)
        pass
    assert all(_gone(pid, 2.0) for pid in workers), "decoding workers outlived the run"
    resumed = run(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert "in use by another run" not in resumed.stderr and "already done" in resumed.stderr
    records = [json.loads(line) for line in (out / "boxes.jsonl").read_text().splitlines()]
    assert len(records) == 60 and len({r["path"] for r in records}) == 60
    assert not list(out.rglob("*.fcnx-tmp"))
