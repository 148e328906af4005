"""``fcnx apply`` at Food-101's scale: time and peak memory on synthetic records, first run and rerun.

A Food-101 root of ``--classes`` x ``--per-class`` tiny JPEGs (101 x 1000 = 101,000 by default, one
16 x 12 picture's bytes in every file), a crop OUTDIR beside it as ``fcnx crop`` writes one (a
``boxes.jsonl`` record and a crop file per image, settings file, dataset lists) and a ``review.jsonl``
deciding on ``--reviewed`` of the images (in turn: accept, accept with an adjusted box (a new cut),
reject wrong_label, reject crop, relabel). Each apply runs as the command does, in a child process
whose peak resident memory (``ru_maxrss``) is read after it ends: a first apply into a new folder, then
a rerun into the same folder (every file already holds its bytes: nothing is rewritten).

    python benchmarks/apply_scale.py [--classes 101] [--per-class 1000] [--reviewed 0.1] [--threads 4]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from fcnx.io.decisions import Decision
from fcnx.io.journal import dump_line
from fcnx.jobs.outdir.settings import SETTINGS

ACTIONS = (
    {"action": "accept"},
    {"action": "accept", "box": (2.0, 1.0, 9.0, 8.0)},
    {"action": "reject", "reason": "wrong_label"},
    {"action": "reject", "reason": "crop"},
    {"action": "relabel"},
)


def record(path: Path, file: str, label: str, index: int) -> dict:
    return {
        "path": str(path), "file": file, "label": label, "width": 16, "height": 12, "category": label,
        "category_index": index, "found": True, "votes": 1, "nets": 1, "confidence": 0.9, "mean_confidence": 0.9,
        "scale": 1.0, "level": 0, "cell": [0, 0], "scaled_size": [12, 16], "x": 1.0, "y": 1.0, "w": 10.0, "h": 10.0,
        "x1": 1.0, "y1": 1.0, "x2": 11.0, "y2": 11.0, "net_scores": {"n": 0.9}, "net_votes": {"n": True},
        "levels_examined": 1, "stopped_early": False, "crop": file, "heatmap": None, "map": None,
        "source_size": 0, "source_mtime_ns": 0,
    }  # fmt: skip


def build(base: Path, classes: int, per_class: int, reviewed: float) -> Path:
    """The dataset and the crop OUTDIR (returned) with its review.jsonl."""
    picture = io.BytesIO()
    Image.new("RGB", (16, 12), (200, 60, 40)).save(picture, format="JPEG", quality=90)
    data = picture.getvalue()
    root, out = base / "food", base / "out"
    names = [f"class{c:03d}" for c in range(classes)]
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "classes.txt").write_text("".join(f"{n}\n" for n in names))
    lines: dict[str, list[str]] = {"train": [], "test": []}
    records, decisions = [], []
    step = max(1, round(1 / reviewed)) if reviewed > 0 else 0
    for c, name in enumerate(names):
        for folder in (root / "images" / name, out / "images" / name):
            folder.mkdir(parents=True)
        for k in range(per_class):
            rel = f"images/{name}/{k}.jpg"
            for target in (root / rel, out / rel):
                target.write_bytes(data)
            lines["train" if k < 0.75 * per_class else "test"].append(f"{name}/{k}")
            r = record(root / rel, rel, name, c)
            r["source_size"], r["source_mtime_ns"] = len(data), (root / rel).stat().st_mtime_ns
            records.append(json.dumps(r))
            n = c * per_class + k
            if step and n % step == 0:
                kind = dict(ACTIONS[(n // step) % len(ACTIONS)])
                if kind["action"] == "relabel":
                    kind["label"] = names[(c + 1) % classes]
                decisions.append(Decision(str(root / rel), reviewer="bench", at="2026-12-07T15:00:00+00:00", **kind))
    for split, names_ in lines.items():
        (root / "meta" / f"{split}.txt").write_text("".join(f"{line}\n" for line in names_))
    (out / "boxes.jsonl").write_text("\n".join(records) + "\n")
    (out / SETTINGS).write_text(json.dumps({"version": 1, "settings": {"nets": ["n"]}, "files": []}))
    (out / "review.jsonl").write_bytes(b"".join(dump_line(d.as_dict()) for d in decisions))
    return out


CHILD = """
import resource, sys, time
from pathlib import Path
from fcnx.jobs.apply import apply
start = time.perf_counter()
applied = apply(Path(sys.argv[1]), Path(sys.argv[2]), threads=int(sys.argv[3]))
seconds = time.perf_counter() - start
print(seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, applied.written, len(applied.plan), applied.totals())
"""


def measure(out: Path, dest: Path, threads: int) -> tuple[float, float, str]:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(out), str(dest), str(threads)], capture_output=True, text=True, check=True
    )
    seconds, rss, written, images, totals = result.stdout.split(" ", 4)
    return float(seconds), int(rss) / 1024, f"{written} of {images} written; {totals.strip()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=101)
    parser.add_argument("--per-class", type=int, default=1000)
    parser.add_argument("--reviewed", type=float, default=0.1, help="fraction of the images with a decision")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--tmp", default=None, help="folder for the data (default: the system's temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        start = time.perf_counter()
        out = build(Path(tmp), args.classes, args.per_class, args.reviewed)
        print(f"built {args.classes * args.per_class} images and records in {time.perf_counter() - start:.1f} s")
        for name in ("first apply", "rerun"):
            seconds, rss, what = measure(out, Path(tmp) / "clean", args.threads)
            n = args.classes * args.per_class
            print(f"{name:>11}: {seconds:7.1f} s ({n / seconds:,.0f} images/s), peak memory {rss:,.0f} MiB; {what}")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; child peak RSS is ru_maxrss")


if __name__ == "__main__":
    main()
