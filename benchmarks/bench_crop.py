"""Speed of ``fcnx crop`` against the authors' procedure and against sliding the plain classifier.

One run, same images (photos from scikit-image, resized like Food-101: long side 512), same nets
(Inception-v3 + Xception at the common kernel 299, random fcnx checkpoints with 101 classes):

(a) fcnx's engine, as ``fcnx crop`` runs it: decode workers, batched nets, crops written;
(b) a faithful one-image-at-a-time loop of the authors' procedure in torch: every net reads and
    resizes the file itself (Keras' ``load_img`` default, nearest), batch 1, each net fed
    ``k_i + 32 * (cells - 1)`` per axis on the grid of the first net's smallest kernel, scales
    from ``295 / min(h, w)`` by 1.2 while below 3.0 (absolute), stop when every net votes;
    (b') the same loop on fcnx's scales, to separate engineering from schedule;
(c) the plain classifier slid over the same windows, timed on a sample, vs the FCN;
(d) the share of (a)'s wall time spent in the nets' forward passes;
(e) peak RSS of a crop run over 10 vs 200 images (one pyramid level, to keep it short).

    python benchmarks/bench_crop.py --threads 1            # about 12 minutes on a 2-core CPU
    python benchmarks/bench_crop.py --quick --threads 1    # about 6 minutes
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fcnx.engine.cropper import Cropper
from fcnx.engine.ensemble import load_ensemble
from fcnx.jobs.crop import CropOptions, run_crop
from fcnx.method import geometry
from fcnx.testing import random_checkpoint

NETS = ["inception_v3", "xception"]
CLASSES = [f"food_{k}" for k in range(101)]
PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry"]
KERNEL = 299


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{model}, {os.cpu_count()} CPUs, {memory:.0f} GiB RAM, {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}, torch {torch.__version__}, intra-op threads={torch.get_num_threads()}"
    )


def make_photos(folder: Path, count: int, seed: int = 0, vary: bool = False) -> list[Path]:
    """``count`` JPEGs, long side 512 (Food-101's size), from scikit-image's photos; ``vary``: random sizes."""
    from skimage import data

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    bases = [Image.fromarray(getattr(data, name)()).convert("RGB") for name in PHOTOS]
    paths = []
    for k in range(count):
        base = bases[k % len(bases)]
        long_side = int(rng.integers(300, 513)) if vary else 512
        zoom = long_side / max(base.size)
        image = base.resize((round(base.width * zoom), round(base.height * zoom)), Image.Resampling.BICUBIC)
        paths.append(folder / f"{k:04d}.jpg")
        image.save(paths[-1], quality=90)
    return paths


# --------------------------------------------------------------------------- (a) fcnx


def cpu_seconds() -> float:
    """CPU time of this process (all threads) and of its finished children (decode workers)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def run_fcnx(cropper: Cropper, photos: Path, out: Path, weights: dict[str, Path]) -> tuple[float, int]:
    """``fcnx crop``'s job over a folder (crops written), with ``cropper`` already loaded; returns (wall seconds, images)."""
    options = CropOptions(nets=NETS, weights={n: str(p) for n, p in weights.items()}, kernel=KERNEL)
    summary = run_crop([photos], out, options, cropper=cropper).run()
    if summary.failures or summary.stopped:
        raise RuntimeError(summary.failures[0] if summary.failures else "interrupted")
    return summary.wall, summary.done


# --------------------------------------------------------------------------- (b) the authors' loop


def authors_crop(fcns, path: Path, category: int, scales: list[float] | None = None) -> dict:
    """One image the way the authors' code did it (see the module docstring)."""
    kernels = [f.spec.w_min(f.pool) for f in fcns]  # each net's smallest kernel for its pool
    grid = min(kernels)  # the authors' grid came from their first net, VGG16, whose kernel 288 was the smallest
    height, width = Image.open(path).size[::-1]
    if scales is None:
        scales, factor = [], 295 / min(height, width)
        while factor < 3.0:
            scales.append(factor)
            factor *= 1.2
    results = []
    for factor in scales:
        rows = (round(height * factor) - grid) // 32 + 1
        cols = (round(width * factor) - grid) // 32 + 1
        heatmaps = []
        for fcn, kernel in zip(fcns, kernels):
            size = (kernel + 32 * (cols - 1), kernel + 32 * (rows - 1))  # (width, height)
            image = Image.open(path).convert("RGB").resize(size, Image.Resampling.NEAREST)
            pixels = torch.from_numpy(np.asarray(image, dtype=np.float32).copy()).permute(2, 0, 1)[None]
            with torch.inference_mode():
                probs = fcn(pixels).softmax(dim=1)[0].numpy()  # classes x rows' x cols'
            heatmaps.append(probs[:, :rows, :cols])
        votes = sum(h.argmax(axis=0) == category for h in heatmaps)
        summed = sum(h[category] for h in heatmaps)
        best = max(zip(*np.nonzero(votes == votes.max())), key=lambda ij: summed[ij])
        results.append({"factor": factor, "cell": best, "votes": int(votes.max()), "score": float(summed[best])})
        if votes.max() == len(fcns):
            break
    chosen = sorted(results, key=lambda r: (r["votes"], r["score"]), reverse=True)[0]
    return {
        **chosen,
        "levels": len(results),
        "x": int(32 * chosen["cell"][1] / chosen["factor"]),
        "y": int(32 * chosen["cell"][0] / chosen["factor"]),
        "side": int(295 / chosen["factor"]),
    }


# --------------------------------------------------------------------------- (c) sliding the classifier


def sliding_vs_fcn(ensemble, path: Path, sample: int) -> dict:
    """CPU seconds per image: the FCNs over the pyramid vs the plain classifiers over every window (sampled)."""
    from fcnx.engine.ensemble import resize
    from fcnx.io.decoding import load_rgb

    pixels, size = load_rgb(path)
    batch = torch.from_numpy(pixels).permute(2, 0, 1)[None]
    levels = [geometry.scaled_size(*size, s, KERNEL) for s in geometry.pyramid_scales(*size, KERNEL)]
    windows = sum(math.prod(ensemble.cells(level)) for level in levels)
    start = time.process_time()
    for level in levels:
        ensemble.probabilities(resize(batch, level))
    fcn_seconds = time.process_time() - start
    rng = np.random.default_rng(0)
    largest = resize(batch, levels[-1])
    rows, cols = ensemble.cells(levels[-1])
    picks = [(int(rng.integers(rows)), int(rng.integers(cols))) for _ in range(sample)]
    crops = torch.cat([largest[:, :, 32 * i : 32 * i + KERNEL, 32 * j : 32 * j + KERNEL] for i, j in picks]).float()
    per_window = 0.0
    with torch.inference_mode():
        for fcn in ensemble.fcns:
            classifier = fcn.classifier.to(memory_format=torch.channels_last)
            best = math.inf
            for chunk_size in (1, 8):  # the classifier at its better batch size
                start = time.process_time()
                for chunk in crops.split(chunk_size):
                    classifier(fcn.normalize(chunk.contiguous(memory_format=torch.channels_last))).softmax(dim=1)
                best = min(best, (time.process_time() - start) / sample)
            per_window += best
    return {"windows": windows, "fcn_s": fcn_seconds, "per_window_s": per_window, "sliding_s": per_window * windows}


# --------------------------------------------------------------------------- (e) memory


def rss_child(photos: str, weights_dir: str, out: str) -> None:
    weights = {name: Path(weights_dir) / f"{name}.safetensors" for name in NETS}
    cropper = Cropper.from_nets(NETS, weights, device="cpu", max_scale=1.0, categories=["food_0"], workers=1)
    wall, done = run_fcnx(cropper, Path(photos), Path(out), weights)
    print(f"{done} {peak_rss_kib()} {wall:.2f} {cropper.batch_size}")


def peak_rss_kib() -> int:
    """This process's peak resident set (VmHWM; unlike ru_maxrss it does not inherit the parent's peak across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def peak_rss(count: int, work: Path, weights_dir: Path) -> tuple[int, float, float]:
    photos = work / f"rss{count}"
    make_photos(photos, count, seed=count, vary=True)
    command = [
        sys.executable,
        __file__,
        "--threads",
        str(torch.get_num_threads()),
        "--rss-child",
        str(photos),
        str(weights_dir),
        str(work / f"rss-out{count}"),
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()
    done, kib, wall, batch = int(output[0]), int(output[1]), float(output[2]), int(output[3])
    assert done == count
    return kib, wall, count / wall, batch


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick", action="store_true", help="2 images, and 10 vs 40 for the memory check (about 6 minutes)"
    )
    parser.add_argument("--images", type=int, default=None, help="images for (a) and (b)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: fcnx's (1 on the CPU)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--rss-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        if args.threads:
            torch.set_num_threads(args.threads)
        rss_child(*args.rss_child)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    count = args.images or (2 if args.quick else 6)
    rss_counts = (10, 40) if args.quick else (10, 200)
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f} at start")
    with tempfile.TemporaryDirectory(prefix="bench-crop-") as tmp:
        work = Path(tmp)
        weights = {
            name: random_checkpoint(work / "weights" / f"{name}.safetensors", name, CLASSES, input_size=KERNEL, seed=k)
            for k, name in enumerate(NETS)
        }
        photos = work / "photos"
        paths = make_photos(photos, count)
        sizes = sorted({Image.open(p).size for p in paths})
        print(f"images: {count} JPEGs, sizes {sizes}; nets {', '.join(NETS)} at kernel {KERNEL}, 101 classes")

        cropper = Cropper.from_nets(
            NETS, weights, device="cpu", categories=["food_0"], batch_size=args.batch_size, workers=args.workers
        )
        cropper.crop_image(paths[0])  # warm-up
        cropper.ensemble.forward_seconds = 0.0
        cpu = cpu_seconds()
        wall_a, done = run_fcnx(cropper, photos, work / "out", weights)
        cpu_a = cpu_seconds() - cpu
        forward_share = cropper.ensemble.forward_seconds / wall_a
        print(
            f"(a) fcnx crop engine: {done / wall_a:.3f} images/s ({wall_a:.1f} s wall, {cpu_a:.1f} s CPU for {done} "
            f"images; batch {cropper.batch_size}, {args.workers} decode worker(s), crops written)"
        )

        fcns = load_ensemble(NETS, weights, device="cpu").fcns
        for f in fcns:  # the authors' loop: plain contiguous tensors, batch 1
            f.net.to(memory_format=torch.contiguous_format)
        authors_crop(fcns, paths[0], 0, scales=[KERNEL / min(Image.open(paths[0]).size)])  # warm-up
        start, cpu, levels = time.perf_counter(), cpu_seconds(), 0
        for path in paths:
            levels += authors_crop(fcns, path, 0)["levels"]
        wall_b, cpu_b = time.perf_counter() - start, cpu_seconds() - cpu
        print(
            f"(b) authors' procedure, one image at a time: {count / wall_b:.3f} images/s ({wall_b:.1f} s wall, "
            f"{cpu_b:.1f} s CPU; {levels / count:.1f} levels per image) -> fcnx is {wall_b / wall_a:.2f}x faster "
            f"in wall time, {cpu_b / cpu_a:.2f}x in CPU time (target >= 2x)"
        )
        start, cpu = time.perf_counter(), cpu_seconds()
        for path in paths:
            height, width = Image.open(path).size[::-1]
            authors_crop(fcns, path, 0, scales=geometry.pyramid_scales(height, width, KERNEL))
        wall_b2, cpu_b2 = time.perf_counter() - start, cpu_seconds() - cpu
        print(
            f"(b') the same loop on fcnx's scales (same forward work): {count / wall_b2:.3f} images/s "
            f"-> fcnx is {wall_b2 / wall_a:.2f}x faster in wall time, {cpu_b2 / cpu_a:.2f}x in CPU time"
        )

        slide = sliding_vs_fcn(cropper.ensemble, paths[0], sample=8 if args.quick else 24)
        print(
            f"(c) one image, {slide['windows']} windows per net over 7 levels: FCNs {slide['fcn_s']:.1f} s CPU; plain "
            f"classifiers {slide['per_window_s'] * 1000:.0f} ms CPU per window (both nets, measured on a sample) -> "
            f"{slide['sliding_s']:.0f} s -> FCN is {slide['sliding_s'] / slide['fcn_s']:.0f}x faster (target >= 25x)"
        )
        print(f"(d) share of (a)'s wall time in the nets' forward passes: {100 * forward_share:.1f} % (target >= 90 %)")

        rss = [peak_rss(n, work, work / "weights") for n in rss_counts]
        print(
            f"(e) peak RSS, one level, batch {rss[0][3]}, varied sizes, crops written: {rss_counts[0]} images "
            f"{rss[0][0] / 1024:.0f} MiB, "
            f"{rss_counts[1]} images {rss[1][0] / 1024:.0f} MiB ({rss[1][2]:.2f} images/s)"
        )


if __name__ == "__main__":
    main()
