"""EfficientNet-Lite0/1/2 each at its native size (224/240/260) vs all at the common kernel 224.

The samples of ``benchmarks/real_photos.py`` (annotated scikit-image photos, whole and pasted),
cropped by ``Cropper.crop_image`` with each configuration, interleaved per sample (the order of
the configurations alternates), one thread, with the sample's category and without one (the
ensemble's top class). Reported per configuration: mean IoU of the square and the tight box with
the true box, share at IoU >= 0.5, label-free category accepted, seconds per image (both calls),
and the ratio of seconds to the first configuration.

    OMP_NUM_THREADS=1 python benchmarks/mixed_kernels.py --pasted 12 -o build/mixed_kernels.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from real_photos import NETS, samples

from fcnx.engine.cropper import Cropper
from fcnx.engine.ensemble import Ensemble, load_ensemble
from fcnx.method import metrics

#: name -> (kernel choice, alignment, reference net: None for the default, the finest grid)
CONFIGS: dict[str, tuple[Any, str, int | None]] = {
    "common 224": (224, "bilinear", None),
    "native, lite0 grid": ("native", "bilinear", 0),
    "native (lite2 grid)": ("native", "bilinear", None),
    "native (lite2 grid), nearest": ("native", "nearest", None),
}


def croppers(max_scale: float, chosen: list[str]) -> dict[str, Cropper]:
    out = {}
    for name in chosen:
        kernel, align, reference = CONFIGS[name]
        fcns = load_ensemble(NETS, kernel=kernel, device="cpu").fcns
        out[name] = Cropper(Ensemble(fcns, fold=False, align=align, reference=reference), max_scale=max_scale)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pasted", type=int, default=12)
    parser.add_argument("--max-scale", type=float, default=3.0)
    parser.add_argument(
        "--configs", default=";".join(CONFIGS), help="separated by semicolons; the first is the baseline"
    )
    parser.add_argument("-o", "--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    crop = croppers(args.max_scale, args.configs.split(";"))
    names = list(crop)
    rows = []
    items = samples(args.pasted, args.seed)
    print(f"{len(items)} samples; load {os.getloadavg()[0]:.2f}", flush=True)
    for k, sample in enumerate(items):
        row: dict[str, Any] = {"name": sample.name, "kind": sample.kind}
        for name in names if k % 2 == 0 else reversed(names):
            cropper = crop[name]
            start = time.perf_counter()
            (with_category,) = cropper.crop_image(sample.pixels, [sample.category]).boxes
            (free,) = cropper.crop_image(sample.pixels).boxes
            seconds = time.perf_counter() - start
            row[name] = {
                "seconds": seconds,
                "square": float(metrics.box_iou(with_category.window, sample.truth)),
                "tight": float(metrics.box_iou(with_category.tight, sample.truth)),
                "free_square": float(metrics.box_iou(free.window, sample.truth)),
                "free_tight": float(metrics.box_iou(free.tight, sample.truth)),
                "free_accepted": free.category in sample.accept,
            }
        rows.append(row)
        print(sample.name, " ".join(f"{n}: {row[n]['square']:.2f}/{row[n]['seconds']:.2f}s" for n in names), flush=True)
    base = np.mean([r[names[0]]["seconds"] for r in rows])
    print(f"\nload after: {os.getloadavg()[0]:.2f}")
    print(
        "| configuration | mean IoU square | tight | IoU>=0.5 square | label-free IoU square | label-free tight "
        "| label-free IoU>=0.5 | label-free category ok | s/image (2 crops) | time ratio |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    summary = {}
    for name in names:
        col = {key: np.array([r[name][key] for r in rows], dtype=float) for key in rows[0][name]}
        summary[name] = {key: float(values.mean()) for key, values in col.items()}
        print(
            f"| {name} | {col['square'].mean():.3f} | {col['tight'].mean():.3f} | {np.mean(col['square'] >= 0.5):.0%} "
            f"| {col['free_square'].mean():.3f} | {col['free_tight'].mean():.3f} | {np.mean(col['free_square'] >= 0.5):.0%} "
            f"| {col['free_accepted'].mean():.0%} | {col['seconds'].mean():.2f} | {col['seconds'].mean() / base:.2f} |"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"rows": rows, "summary": summary}, indent=1) + "\n")


if __name__ == "__main__":
    main()
