"""Agreement of the backends and precisions with today's torch path, on >= 200 images.

Images: the annotated scikit-image photos (``fcnx.testing.photos``) as they are, mirrored, and
cut three ways (centre 80 %, top-left and bottom-right 75 %), through the default ensemble
(EfficientNet-Lite0/1/2, kernel 224); fcnx-tiny's 10 demo canvases and its benchmark canvases
(generated from Fashion-MNIST, ``fcnx.bench.fashion``) through tiny_vgg + tiny_resnet + tiny_inception.
Every image is cropped for its own category and again with none (the ensemble's top class).

Variants, each run on the same image right after the reference (torch eager, batch norms unfolded,
as fcnx ran before): torch with folded batch norms, ONNX Runtime fp32, OpenVINO fp32, OpenVINO bf16
(where this CPU has native bf16), torch folded with ``--early-stop`` (which applies only when the
category is given).
Reported per variant: the largest |probability difference| over every pyramid level (variants without early stop),
the share of boxes whose category, level and cell equal the reference's, the share whose tight box
does, the mean IoU of the boxes with the reference's, and on the benchmark canvases the localization
score (share of boxes with IoU >= 0.5 with the true box, and their mean IoU with it).

    python benchmarks/backend_agreement.py --threads 1              # about an hour on a busy 2-core machine
    python benchmarks/backend_agreement.py --photos 0 --canvases 19  # the 200 canvases only: minutes
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from PIL import Image

from fcnx.engine import backends
from fcnx.engine.cropper import Cropper
from fcnx.engine.ensemble import Ensemble
from fcnx.engine.fcn import load_fcn
from fcnx.engine.results import Box
from fcnx.io.discovery import ImageItem, discover
from fcnx.method.metrics import box_iou

LITE = (("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"), 224)
TINY = (("tiny_vgg", "tiny_resnet", "tiny_inception"), 56)
#: name -> (backend, precision, fold, early stop)
VARIANTS = {
    "torch folded": ("torch", "fp32", True, False),
    "onnxruntime fp32": ("onnxruntime", "fp32", True, False),
    "openvino fp32": ("openvino", "fp32", True, False),
    "openvino bf16": ("openvino", "bf16", True, False),
    "folded, early stop": ("torch", "fp32", True, True),
}


@dataclasses.dataclass
class Tally:
    """Agreement of one variant with the reference, accumulated over boxes."""

    max_diff: float = 0.0
    same: int = 0
    same_tight: int = 0
    boxes: int = 0
    same_labelled: int = 0
    labelled: int = 0
    iou: float = 0.0
    truth_hits: int = 0
    truth_iou: float = 0.0
    truth_boxes: int = 0
    seconds: float = 0.0

    def row(self) -> dict[str, Any]:
        return {
            "max_abs_prob_diff": self.max_diff,
            "same_level_and_cell": f"{self.same}/{self.boxes}",
            "share_same": self.same / max(self.boxes, 1),
            "same_tight_box": f"{self.same_tight}/{self.boxes}",
            "same_level_cell_and_tight_with_category": f"{self.same_labelled}/{self.labelled}",
            "mean_iou_with_reference": self.iou / max(self.boxes, 1),
            "localization_hits_at_0.5": f"{self.truth_hits}/{self.truth_boxes}",
            "localization_mean_iou": self.truth_iou / max(self.truth_boxes, 1),
            "seconds": self.seconds,
        }


def recorded(ensemble: Ensemble) -> list[torch.Tensor]:
    """Make ``ensemble`` keep every level's probabilities in the returned list (cleared by the caller)."""
    levels: list[torch.Tensor] = []
    forward = ensemble.probabilities_of

    def probabilities_of(inputs: Any, size: tuple[int, int], exact: bool = False) -> torch.Tensor:
        out = forward(inputs, size, exact)
        levels.append(out)
        return out

    ensemble.probabilities_of = probabilities_of  # type: ignore[method-assign]
    return levels


def photo_images(folder: Path, count: int) -> list[tuple[ImageItem, str]]:
    """The annotated photos (the first ``count``), mirrored and cut, as PNG files with their category."""
    from fcnx.testing.photos import PHOTOS

    cuts: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "whole": lambda a: a,
        "mirror": lambda a: a[:, ::-1],
        "centre": lambda a: a[a.shape[0] // 10 : a.shape[0] * 9 // 10, a.shape[1] // 10 : a.shape[1] * 9 // 10],
        "top_left": lambda a: a[: a.shape[0] * 3 // 4, : a.shape[1] * 3 // 4],
        "bottom_right": lambda a: a[a.shape[0] // 4 :, a.shape[1] // 4 :],
    }
    out = []
    for photo in list(PHOTOS.values())[:count]:
        pixels = photo.load()
        for cut, make in cuts.items():
            path = folder / f"{photo.name}_{cut}.png"
            Image.fromarray(np.ascontiguousarray(make(pixels))).save(path)
            out.append((ImageItem(path, PurePosixPath(path.name), None), photo.category))
    return out


def canvas_images(folder: Path, per_class: int) -> tuple[list[ImageItem], dict[str, list[int]]]:
    """fcnx-tiny's demo canvases and ``per_class`` benchmark canvases per class, with their true boxes."""
    import fcnx_tiny

    demo = Path(fcnx_tiny.__file__).parent / "demo"
    items = discover([demo])
    truth = {str(demo / "images" / k): v for k, v in json.loads((demo / "boxes.json").read_text()).items()}
    if per_class:
        from fcnx.bench.fashion import FASHION_MNIST, BenchConfig, generate

        if not FASHION_MNIST.is_dir():
            print(f"no Fashion-MNIST at {FASHION_MNIST}: the demo canvases only", file=sys.stderr)
        else:
            root = folder / "bench"
            generate(root, BenchConfig(seed=7, train_per_class=0, test_per_class=per_class))
            items += discover([root], split="test")
            truth |= {str(root / "images" / k): v for k, v in json.loads((root / "boxes.json").read_text()).items()}
    return items, truth


def croppers(nets: tuple[str, ...], kernel: int, names: list[str]) -> dict[str, Cropper]:
    """The reference and each variant, every one with its own freshly loaded nets."""
    out = {"reference": Cropper(Ensemble([load_fcn(n, "pretrained", kernel=kernel) for n in nets], fold=False))}
    for name in names:
        backend, precision, fold, early = VARIANTS[name]
        fcns = [load_fcn(n, "pretrained", kernel=kernel) for n in nets]
        ensemble = Ensemble(fcns, fold=fold, backend=backend, precision=precision)
        out[name] = Cropper(ensemble, early_stop=early)
    return out


def compare(
    crops: dict[str, Cropper],
    records: dict[str, list[torch.Tensor]],
    tallies: dict[str, Tally],
    item: ImageItem,
    category: str | None,
    truth: list[int] | None,
) -> None:
    """Crop ``item`` with every cropper (reference first) and add the agreement to the tallies."""
    results: dict[str, Box] = {}
    for name, cropper in crops.items():
        records[name].clear()
        start = time.perf_counter()
        (results[name],) = cropper.crop_image(item.path, [category] if category else None).boxes
        tallies[name].seconds += time.perf_counter() - start
    ref = results["reference"]
    for name, box in results.items():
        tally = tallies[name]
        if name != "reference" and not crops[name].early_stop:
            for a, b in zip(records["reference"], records[name], strict=True):
                tally.max_diff = max(tally.max_diff, (a - b).abs().max().item())
        tally.boxes += 1
        tally.same += (box.category, box.level, box.cell) == (ref.category, ref.level, ref.cell)
        tally.same_tight += box.category == ref.category and box.tight == ref.tight
        if category is not None:
            tally.labelled += 1
            tally.same_labelled += (box.level, box.cell, box.tight) == (ref.level, ref.cell, ref.tight)
        tally.iou += float(box_iou([box.x, box.y, box.w, box.h], [ref.x, ref.y, ref.w, ref.h]))
        if truth is not None and category is not None:
            iou = float(box_iou([box.x, box.y, box.w, box.h], truth))
            tally.truth_boxes += 1
            tally.truth_hits += iou >= 0.5
            tally.truth_iou += iou


def run_set(
    label: str,
    nets: tuple[str, ...],
    kernel: int,
    images: list[tuple[ImageItem, str, list[int] | None]],
    names: list[str],
) -> dict[str, dict[str, Any]]:
    crops = croppers(nets, kernel, names)
    records = {name: recorded(c.ensemble) for name, c in crops.items()}
    tallies = {name: Tally() for name in crops}
    for k, (item, category, truth) in enumerate(images):
        for wanted in (category, None):
            compare(crops, records, tallies, item, wanted, truth)
        print(f"  {label}: {k + 1}/{len(images)} images", file=sys.stderr, end="\r")
    print(file=sys.stderr)
    return {name: tally.row() for name, tally in tallies.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--photos", type=int, default=7, help="annotated photos (x5 images each)")
    parser.add_argument("--canvases", type=int, default=16, help="benchmark canvases per class (10 classes)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--only", nargs="+", choices=list(VARIANTS), default=None, help="variants to run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = [n for n in args.only or VARIANTS if VARIANTS[n][1] == "fp32" or backends.native_bf16()]
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        photos = [(item, category, None) for item, category in photo_images(folder, args.photos)]
        canvases, truth = canvas_images(folder, args.canvases)
        labelled = [(item, item.label or "", truth.get(str(item.path))) for item in canvases]
        print(f"{len(photos)} photos, {len(labelled)} canvases, each with and without its category", file=sys.stderr)
        results = {}
        if photos:
            results["photos, EfficientNet-Lite0/1/2 at 224"] = run_set("photos", *LITE, photos, names)
        results["canvases, tiny_vgg/resnet/inception at 56"] = run_set("canvases", *TINY, labelled, names)
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((line.split(":", 1)[1].strip() for line in cpu.splitlines() if line.startswith("Model name")), "?")
    print(f"\nCPU {model}, {platform.python_version()}, torch {torch.__version__}, {args.threads} thread(s)")
    print(f"load average before {load[0]:.2f}, after {os.getloadavg()[0]:.2f}")
    for title, rows in results.items():
        print(f"\n{title}")
        print(
            f"{'variant':24} {'max |dp|':>10} {'same level+cell':>16} {'same tight':>11} {'IoU vs ref':>10} "
            f"{'same, given category':>20} {'seconds':>8} {'loc hits':>9} {'loc IoU':>8}"
        )
        for name, row in rows.items():
            print(
                f"{name:24} {row['max_abs_prob_diff']:10.2e} {row['same_level_and_cell']:>16} "
                f"{row['same_tight_box']:>11} {row['mean_iou_with_reference']:10.4f} "
                f"{row['same_level_cell_and_tight_with_category']:>20} "
                f"{row['seconds']:8.1f} {row['localization_hits_at_0.5']:>9} "
                f"{row['localization_mean_iou']:8.4f}"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
