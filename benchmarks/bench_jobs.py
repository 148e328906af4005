"""``fcnx crop`` with no performance flags against ``--backend torch --jobs 1``, and P processes against one.

Real photos of Food-101-like sizes: the six scikit-image photos of :mod:`fcnx.testing.photos`, each whole,
mirrored, and cut to its central 70 % (long side 512, JPEG): 18 images. The default ensemble
(EfficientNet-Lite0/1/2, kernel 224), each image's top class. Each variant is one ``fcnx crop`` process in
a fresh OUTDIR; the variants run one after the other, round after round (interleaved, so that a busy
machine slows all of them alike). Per run: the wall time (start-up included) and the steady rate, from
the times the journal's lines appear (first to last image: start-up excluded). Reported per variant: the
median images/s (steady) and its min-max over rounds, images/s per core, the ratio against the
reference variant per round (median [min-max]), GFLOP/s against the cores' fp32 peak (``lscpu``), and
whether the boxes are those of the reference (level, cell, votes, box of every record).

    python benchmarks/bench_jobs.py                       # the default variants, 2 rounds
    python benchmarks/bench_jobs.py --rounds 3 --images 16

The variants: ``default`` (no flags: ``--backend auto --jobs auto``, P = one process per core), ``auto 1
proc`` (``--jobs 1`` on one thread, ``OMP_NUM_THREADS=1``: one process of the same backend), ``torch x1``
(``--backend torch --jobs 1``, torch's own thread count: the default before); with ``--scaling B`` also
``B 1 proc`` against ``B P procs`` (``--jobs P``). Scaling efficiency: throughput at P processes / (P x one
process).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LONG_SIDE = 512
NETS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


def make_photos(folder: Path, count: int) -> list[Path]:
    """``count`` JPEGs of the scikit-image photos, whole, mirrored and cut, long side 512."""
    from PIL import Image, ImageOps

    from fcnx.testing.photos import PHOTOS

    loaders = {p.loader: p for p in PHOTOS.values()}
    variants = [(v, name, photo) for v in ("whole", "mirrored", "cut") for name, photo in sorted(loaders.items())]
    if not 1 <= count <= len(variants):
        raise SystemExit(f"--images must be 1 to {len(variants)} (the photos' variants), got {count}")
    paths = []
    for variant, name, photo in variants[:count]:  # only these are written: the run crops the whole folder
        image = Image.fromarray(photo.load())
        if variant == "mirrored":
            image = ImageOps.mirror(image)
        elif variant == "cut":
            w, h = image.size
            image = image.crop((w * 15 // 100, h * 15 // 100, w * 85 // 100, h * 85 // 100))
        image.thumbnail((LONG_SIDE, LONG_SIDE), Image.Resampling.BICUBIC)
        if max(image.size) < LONG_SIDE:  # small photos grow to Food-101's size
            scale = LONG_SIDE / max(image.size)
            image = image.resize((round(image.size[0] * scale), round(image.size[1] * scale)), Image.BICUBIC)
        path = folder / f"{variant}_{name}.jpg"
        image.save(path, quality=90)
        paths.append(path)
    return paths


def lscpu() -> dict[str, str]:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines())}


def core_peak(info: dict[str, str]) -> tuple[float, str]:
    """One core's fp32 peak in GFLOP/s: GHz x 2 FMA pipes x lanes (16 with AVX-512, 8 with AVX2) x 2."""
    flags = info.get("Flags", "").split()
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    mhz = info.get("CPU max MHz") or info.get("CPU MHz")
    ghz = float(mhz) / 1000 if mhz else float(info.get("BogoMIPS", "0")) / 2000
    how = f"{ghz:.2f} GHz ({'max MHz' if mhz else 'BogoMIPS / 2'}) x 2 FMA pipes x {lanes} fp32 lanes x 2"
    return ghz * 2 * lanes * 2, how


def pyramid_flops(paths: list[Path]) -> float:
    """FLOPs of the default ensemble's pyramids over ``paths`` (torch.utils.flop_counter; sizes counted once)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from fcnx.engine.cropper import Cropper
    from fcnx.engine.ensemble import resize
    from fcnx.io.decoding import load_rgb

    cropper = Cropper.from_nets(list(NETS), kernel=224, device="cpu", backend="torch")
    by_size: dict[tuple[int, int], float] = {}
    total = 0.0
    for path in paths:
        pixels, size = load_rgb(path, cropper.min_side)
        if size not in by_size:
            tensor = torch.from_numpy(pixels).permute(2, 0, 1)[None]
            prepared = cropper._prepare(None, tensor[0], size, None)  # type: ignore[arg-type]
            with FlopCounterMode(display=False) as counter, torch.inference_mode():
                for _, scaled in prepared.levels:
                    cropper.ensemble.probabilities_of({scaled: resize(tensor, scaled)}, scaled)
            by_size[size] = counter.get_total_flops()
        total += by_size[size]
    return total


def run(folder: Path, out: Path, flags: list[str], env: dict[str, str], stop_after: int = 0) -> dict:
    """One ``fcnx crop`` process: wall time, steady images/s, the records; stopped (``SIGINT``, as Ctrl-C:
    the images done are written) once ``stop_after`` images are journaled, if given."""
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "fcnx", "crop", "-q", "--dry-run", *flags, str(folder), "-o", str(out)]
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    journal, stamps = out / "boxes.jsonl", []
    while process.poll() is None:
        lines = journal.read_bytes().count(b"\n") if journal.exists() else 0
        stamps += [time.perf_counter()] * (lines - len(stamps))
        if stop_after and lines >= stop_after:
            process.send_signal(signal.SIGINT)
            process.wait()
            break
        time.sleep(0.05)
    wall = time.perf_counter() - start
    if process.returncode not in (0, 128 + signal.SIGINT) or (process.returncode and not stop_after):
        raise SystemExit(f"{' '.join(flags)} failed: {process.stderr.read()[-2000:]}")
    records = [json.loads(line) for line in journal.read_text().splitlines()]
    stamps += [time.perf_counter()] * (len(records) - len(stamps))
    steady = (
        (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 and stamps[-1] > stamps[0] else float("nan")
    )
    header = next((line for line in process.stderr.read().splitlines() if "with" in line), "")
    return {"wall": wall, "steady": steady, "records": records, "header": header}


def boxes(records: list[dict]) -> dict[str, tuple]:
    """Per image, its box: category, level, cell, votes, x, y, w, h."""
    return {
        r["path"]: (r["category"], r["level"], tuple(r["cell"]), r["votes"], r["x"], r["y"], r["w"], r["h"])
        for r in records
    }


def agree(records: list[dict], reference: dict[str, tuple]) -> str:
    """``same/common``: images with the reference's box, of those both cropped."""
    mine = boxes(records)
    common = sorted(set(mine) & set(reference))
    return f"{sum(mine[p] == reference[p] for p in common)}/{len(common)}"


def uptime() -> str:
    return re.sub(r".*load average: ", "", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=18)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--stop-after", type=int, default=0, help="stop each run after N images (a busy machine)")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 2, help="P for the scaling runs")
    parser.add_argument("--scaling", nargs="*", default=[], help="more backends whose scaling is measured")
    parser.add_argument("--gflop", type=float, default=None, help="GFLOP per image, if counted before (skips counting)")
    args = parser.parse_args()

    base = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "FCNX_BACKEND", "FCNX_JOBS")}
    one = {**base, "OMP_NUM_THREADS": "1"}
    variants: dict[str, tuple[list[str], dict[str, str]]] = {
        "default (no flags)": ([], base),
        "torch x1 (before)": (["--backend", "torch", "--jobs", "1"], base),
        "auto 1 proc x 1 thread": (["--jobs", "1"], one),
    }
    for backend in args.scaling:
        variants[f"{backend} 1 proc x 1 thread"] = (["--backend", backend, "--jobs", "1"], one)
        variants[f"{backend} {args.processes} procs x 1 thread"] = (
            ["--backend", backend, "--jobs", str(args.processes)],
            base,
        )
    info = lscpu()
    cores = len(os.sched_getaffinity(0))
    peak, how = core_peak(info)
    with tempfile.TemporaryDirectory(prefix="fcnx-bench-jobs-") as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        paths = make_photos(folder, args.images)
        flops = args.gflop * 1e9 if args.gflop else pyramid_flops(paths) / len(paths)
        print(f"{info.get('Model name')} (family {info.get('CPU family')} model {info.get('Model')}), {cores} cores;")
        print(f"core fp32 peak {peak:.1f} GFLOP/s = {how}; {len(paths)} photos; {flops / 1e9:.1f} GFLOP per image")
        results: dict[str, list[dict]] = {name: [] for name in variants}
        loads = [uptime()]
        for r in range(args.rounds):
            for name, (flags, env) in variants.items():
                results[name].append(run(folder, Path(tmp) / "out", flags, env, args.stop_after))
                last = results[name][-1]
                print(
                    f"  round {r + 1} {name}: {last['wall']:.1f} s wall, {last['steady']:.3f} images/s steady; {last['header']}",
                    flush=True,
                )
            loads.append(uptime())
    reference = "torch x1 (before)"
    ref_boxes = boxes(results[reference][0]["records"])
    print(f"\nload average (1, 5, 15 min) before and after each round: {' | '.join(loads)}")
    print(
        f"{'variant':34} {'img/s steady':>14} {'[min-max]':>16} {'img/s wall':>10} {'per core':>9} {'GFLOP/s/core':>12} {'% peak':>7}  ratio vs reference (steady) [min-max]  same boxes"
    )
    for name, runs in results.items():
        steady = [x["steady"] for x in runs]
        wall = [len(x["records"]) / x["wall"] for x in runs]
        used = cores if ("procs" in name or "default" in name or "before" in name) else 1
        rate = statistics.median(steady)
        per_core = rate / used
        ratios = [a["steady"] / b["steady"] for a, b in zip(runs, results[reference])]
        same = ", ".join(agree(x["records"], ref_boxes) for x in runs)
        print(
            f"{name:34} {rate:14.3f} {f'[{min(steady):.3f}-{max(steady):.3f}]':>16} {statistics.median(wall):10.3f} "
            f"{per_core:9.3f} {per_core * flops / 1e9:12.1f} {100 * per_core * flops / 1e9 / peak:6.1f}%  "
            f"{statistics.median(ratios):.2f}x [{min(ratios):.2f}-{max(ratios):.2f}]   {same}"
        )
    pairs = [("auto", "default (no flags)", "auto 1 proc x 1 thread")]
    pairs += [(b, f"{b} {args.processes} procs x 1 thread", f"{b} 1 proc x 1 thread") for b in args.scaling]
    for backend, many_name, single_name in pairs:
        p = args.processes
        many, single = results[many_name], results[single_name]
        ratios = [a["steady"] / b["steady"] for a, b in zip(many, single)]
        print(
            f"{backend}: {p} processes / 1 process = {statistics.median(ratios):.2f}x [{min(ratios):.2f}-{max(ratios):.2f}], "
            f"scaling efficiency {statistics.median(ratios) / p:.0%}"
        )


if __name__ == "__main__":
    main()
