"""A dataset-sized ``fcnx crop``: is the run as fast and as small at its end as at its start?

Generates ``N`` Food-101-like JPEGs (``benchmarks/gpu_check.py``'s generator: random cuts, mirrors and tints
of the scikit-image photos, long side 512, ``images/<class>/<id>.jpg``), then runs ``fcnx crop`` with the
tiny nets of ``fcnx-tiny`` (``tiny_vgg,tiny_resnet,tiny_inception``, kernel 56, category 0), crops and
``--gallery`` written, no performance flags (``--backend auto --jobs auto``) unless ``--flags``. While it
runs, the journal's line count and the resident memory of the whole process tree (parent and workers,
``/proc``) are sampled. Reported: images/s over the first and the last 10 % of the images, the peak
resident memory over the first and the last 10 %, and with ``--kill`` a ``SIGKILL`` of the run at half-way
and the seconds its rerun takes to journal its first new image.

    python benchmarks/bench_dataset.py 2000              # ~5 minutes on a busy 2-core machine
    python benchmarks/bench_dataset.py 20000 --kill
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

NETS = "tiny_vgg,tiny_resnet,tiny_inception"


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and its descendants (Linux /proc)."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        child = int(stat.parent.name)
        parents[child] = int(fields[1])
        rss[child] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    total, frontier = 0, {pid}
    while frontier:
        total += sum(rss.get(p, 0) for p in frontier)
        frontier = {c for c, p in parents.items() if p in frontier}
    return total


def watch(command: list[str], journal: Path, env: dict[str, str], kill_at: int | None = None) -> dict:
    """Run ``command``; sample ``(seconds, journal lines, tree RSS)``; ``SIGKILL`` it at ``kill_at`` lines."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    samples = []
    while process.poll() is None:
        lines = journal.read_bytes().count(b"\n") if journal.exists() else 0
        samples.append((time.perf_counter() - start, lines, tree_rss(process.pid)))
        if kill_at is not None and lines >= kill_at:
            process.send_signal(signal.SIGKILL)
            process.wait()
            break
        time.sleep(0.25)
    stderr = process.stderr.read() if process.stderr else ""
    if kill_at is None and process.returncode != 0:
        raise SystemExit(f"fcnx crop failed: {stderr[-2000:]}")
    return {"samples": samples, "wall": time.perf_counter() - start, "stderr": stderr}


def tenths(samples: list[tuple[float, int, int]], total: int) -> tuple[float, float, int, int]:
    """images/s over the first and the last 10 % of ``total`` images, and the peak RSS over each."""
    tenth = max(1, total // 10)

    def at(lines: int) -> float:
        return next(t for t, n, _ in samples if n >= lines)

    first = tenth / (at(tenth) - at(1)) if at(tenth) > at(1) else float("nan")
    last = tenth / (at(total) - at(total - tenth)) if at(total) > at(total - tenth) else float("nan")
    rss_first = max(r for t, n, r in samples if 1 <= n <= tenth)
    rss_last = max(r for t, n, r in samples if n >= total - tenth)
    return first, last, rss_first, rss_last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("n", type=int, help="images")
    parser.add_argument("--kill", action="store_true", help="SIGKILL at half-way, then rerun")
    parser.add_argument("--flags", nargs=argparse.REMAINDER, default=[], help="more fcnx crop options")
    args = parser.parse_args()
    from gpu_check import generate

    env = {k: v for k, v in os.environ.items() if k not in ("FCNX_BACKEND", "FCNX_JOBS")}
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="fcnx-bench-dataset-") as tmp:
        root, out = Path(tmp) / "food", Path(tmp) / "out"
        tick = time.perf_counter()
        generate(root, args.n)
        print(
            f"{args.n} images generated in {time.perf_counter() - tick:.0f} s; load average {uptime.split('average: ')[1]}"
        )
        command = [sys.executable, "-m", "fcnx", "crop", "--nets", NETS, "--category", "0", "--gallery"]
        command += [*args.flags, str(root), "-o", str(out)]
        journal = out / "boxes.jsonl"
        runs = []
        if args.kill:
            killed = watch(command, journal, env, kill_at=args.n // 2)
            lines = journal.read_bytes().count(b"\n")
            rerun = watch(command, journal, env)
            first_new = next(t for t, n, _ in rerun["samples"] if n > lines)
            print(
                f"SIGKILL at {lines} images ({killed['wall']:.0f} s); the rerun journaled its first new image after {first_new:.1f} s"
            )
            runs = [rerun]
        else:
            runs = [watch(command, journal, env)]
        run = runs[0]
        header = next((line for line in run["stderr"].splitlines() if " with " in line), "")
        print(re.sub(r"\s+", " ", header))
        if not args.kill:
            first, last, rss_first, rss_last = tenths(run["samples"], args.n)
            print(
                f"images/s first 10 %: {first:.2f}, last 10 %: {last:.2f} (last/first {last / first:.2f}); "
                f"peak RSS (parent + workers) first 10 %: {rss_first / 2**20:.0f} MiB, last 10 %: {rss_last / 2**20:.0f} MiB; "
                f"{args.n / run['wall']:.2f} images/s over {run['wall']:.0f} s"
            )
        pages = sorted(out.glob("gallery*.html"))
        size = sum(p.stat().st_size for p in pages)
        rows = (out / "boxes.csv").read_text().count("\n") - 1
        print(f"boxes.csv: {rows} rows; gallery: {len(pages)} page(s), {size / 2**20:.1f} MiB in all")
        uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
        print(f"load average after: {uptime.split('average: ')[1]}")


if __name__ == "__main__":
    main()
