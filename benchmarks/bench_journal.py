"""Does ``fcnx crop``'s memory stay flat as its journal grows? Peak memory of the journal and the tables alone.

A dataset-sized ``fcnx crop`` holds, besides its nets, one entry per image done; before issue 30 that entry
was the image's records themselves (about 1.5 KB of JSON each, several KB as Python objects), read back
whole on resuming and held until the tables were written. This benchmark runs, in fresh processes, what a
run does with its journal and nothing else (no nets, no images: made-up records of
:func:`fcnx.testing.records.crop_record`'s fields, one per image, crops and heatmaps named):

- **run**: open an empty OUTDIR (:class:`fcnx.jobs.outdir.outputs.CropOutputs`), journal ``N`` images one at a time,
  then finish (``boxes.jsonl`` put in input order, ``boxes.csv``, the gallery pages);
- **resume**: open that OUTDIR again (the journal read back, each image checked done) and finish again.

For each, the peak of the memory Python allocated meanwhile (``tracemalloc``: the list of images made before
is not counted), and the seconds (tracemalloc slows Python down: compare them side by side only). ``--against PATH`` runs the same in a checkout of another fcnx (``/work/main``: before this
change) in the same run, side by side, and checks that both wrote the same bytes.

    python benchmarks/bench_journal.py 100000 --against /work/main
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, sys, time, tracemalloc
from pathlib import Path
phase, out, n = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
from fcnx.io.discovery import ImageItem
from fcnx.engine.options import CropOptions
from fcnx.jobs.outdir.outputs import CropOutputs
from fcnx.testing.records import crop_record

def items():
    return [ImageItem(out.parent / "images" / f"c{k % 101}" / f"{k}.jpg", Path(f"c{k % 101}/{k}.jpg")) for k in range(n)]

def outputs():
    return CropOutputs(out, {"version": 1}, net_names=["a", "b", "c"], kernel=56, stride=8, expected_boxes=1, options=CropOptions(gallery=True))

try:  # the journal takes CropRecords since they exist; a checkout before them (--against), JSON dicts
    from fcnx.io.record import CropRecord
    as_record = CropRecord.from_json
except ImportError:
    as_record = lambda record: record  # noqa: E731
order = items()
out.mkdir(parents=True, exist_ok=True)
tracemalloc.start()
tick = time.perf_counter()
o = outputs()
o.open()
if phase == "run":
    for k, item in enumerate(order):
        record = crop_record(str(item.path), item.rel.as_posix(), f"c{k % 101}", (512, 384), (10.0, 20.0, 100.0 + k % 50, 90.0))
        record.update(crop=f"c{k % 101}/{k}.jpg", heatmap=f"heatmaps/c{k % 101}/{k}.png", map=None,
                      source_size=1000 + k, source_mtime_ns=10**18 + k,
                      net_scores={"a": 0.123456789, "b": 0.23456789, "c": 0.3456789}, net_votes={"a": True, "b": False, "c": True})
        o.journal.append([as_record(record)])
else:
    done = sum(o.done(item) for item in order)
o.finish([], order=order[::-1])
import fcnx
peak = tracemalloc.get_traced_memory()[1]
print(json.dumps({"peak_kib": peak / 1024, "seconds": time.perf_counter() - tick, "fcnx": fcnx.__file__}))
"""


def run(checkout: Path, phase: str, out: Path, n: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(checkout), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", CHILD, phase, str(out), str(n)],
        env=env,
        cwd=checkout,  # "-c" puts the current folder first on the path
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"{phase} in {checkout} failed: {result.stderr[-2000:]}")
    figures = json.loads(result.stdout.splitlines()[-1])
    if not figures["fcnx"].startswith(str(checkout)):
        raise SystemExit(f"{checkout}: ran the fcnx of {figures['fcnx']}")
    return figures


def digest(out: Path) -> str:
    files = sorted(p for p in out.iterdir() if p.is_file() and p.suffix in (".jsonl", ".csv", ".html"))
    here = str(out.parent).encode()  # the records name the images by absolute path, under each run's folder
    return hashlib.sha256(b"".join(p.name.encode() + p.read_bytes().replace(here, b"") for p in files)).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("n", type=int, nargs="+", help="images (one record each)")
    parser.add_argument("--against", type=Path, help="another fcnx checkout, run side by side")
    shm = Path("/dev/shm")
    parser.add_argument(
        "--dir",
        type=Path,
        default=shm if shm.is_dir() else None,
        help="where OUTDIR goes [default: /dev/shm, where a journal line's fsync costs nothing]",
    )
    args = parser.parse_args()
    checkouts = {"this": Path(__file__).resolve().parent.parent}
    if args.against is not None:
        checkouts["against"] = args.against.resolve()
    print("load average:", os.getloadavg())
    for n in args.n:
        sums = set()
        for name, checkout in checkouts.items():
            with tempfile.TemporaryDirectory(prefix="fcnx-bench-journal-", dir=args.dir) as tmp:
                out = Path(tmp) / "out"
                first, again = run(checkout, "run", out, n), run(checkout, "resume", out, n)
                sums.add(digest(out))  # before the folder (in the outputs' paths) goes
                size = (out / "boxes.jsonl").stat().st_size
                print(
                    f"{name:8} {n:7} images, journal {size / 2**20:6.1f} MiB: run peak +{first['peak_kib'] / 1024:6.1f} MiB "
                    f"in {first['seconds']:5.1f} s; resume peak +{again['peak_kib'] / 1024:6.1f} MiB in {again['seconds']:5.1f} s (traced)"
                )
        if len(checkouts) > 1:
            print(f"{n} images: the same outputs in both" if len(sums) == 1 else f"{n} images: OUTPUTS DIFFER")
    print("load average:", os.getloadavg())


if __name__ == "__main__":
    main()
