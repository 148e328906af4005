"""Grad-CAM beside fcnx's boxes on the benchmark canvases of ``fcnx bench localization`` (issue #14).

On the test canvases of a benchmark root (``fcnx bench data``), with fcnx-tiny's shipped
``tiny_vgg``, ``tiny_resnet`` and ``tiny_inception`` at kernel 56, pyramid step 1.2 up to 4x (the
settings of docs/results.md), each with the canvas's label and label-free:

- ``square``, ``tight`` and ``fitted``: the paper rule's boxes of the full ensemble, made by
  :func:`fcnx.bench.localization.subset_box`, :func:`~fcnx.bench.localization.subset_tight` and
  :func:`fcnx.method.boxes.box` ``("fitted", ...)``, so with the label exactly the ``(paper)``, ``(paper, tight)``
  and ``(paper, fitted)`` rows of ``fcnx bench localization``; label-free, the boxes of the ensemble's top
  class at its most confident cell (what ``fcnx crop`` gives with no label);
- ``Grad-CAM ensemble``: :class:`fcnx.bench.gradcam.GradCamEnsemble` on the same nets, each at its
  native size (56) on the whole canvas, the mean map's largest region >= half its peak (the construction
  of benchmarks/real_photos.py); label-free, the top class of the nets' mean probabilities;
- ``Grad-CAM ensemble (canvas size)``: the same with every net on the canvas at its own size (the tiny
  nets take any size), so the object is as large as the nets saw it in training.

Scored as ``fcnx bench localization`` scores boxes (:func:`fcnx.method.metrics.box_accuracy`: mean IoU,
shares at IoU 0.3/0.5/0.7, MaxBoxAccV2 their mean), with seconds per image with the label (one
process, interleaved: fcnx's pyramid is shared by its boxes and timed once; the fitted box adds its own
seconds).

    OMP_NUM_THREADS=1 python benchmarks/canvases_gradcam.py --data build/tiny/data -o build/canvases_gradcam.json

Needs the ``bench`` extra (grad-cam, OpenCV) and fcnx-tiny.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from fcnx.bench import localization, report
from fcnx.bench.gradcam import GradCamEnsemble
from fcnx.engine.cropper import Cropper
from fcnx.method import boxes as box_rules
from fcnx.method import metrics
from fcnx.method.selection import top_category

NETS = ["tiny_vgg", "tiny_resnet", "tiny_inception"]
METHODS = ("square", "tight", "fitted", "Grad-CAM ensemble", "Grad-CAM ensemble (canvas size)")
#: the methods of fcnx's one pyramid
FCNX_METHODS = METHODS[:3]
SIDES = ("with", "free")


def fcnx_boxes(cropper: Cropper, pyramid: localization.Pyramid, pixels: np.ndarray) -> dict[str, Any]:
    """The full ensemble's square, tight and fitted boxes of the pyramid's category under the paper rule."""
    full = tuple(range(len(cropper.ensemble.names)))
    return {
        "square": localization.subset_box(cropper, pyramid, full, "paper"),
        "tight": localization.subset_tight(cropper, pyramid, full, "paper").box,
        "fitted": box_rules.box("fitted", localization.found(cropper, pyramid, full, "paper", pixels)),
    }


def run(
    root: Path,
    cropper: Cropper,
    cams: dict[str, GradCamEnsemble],
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every method on every test canvas of ``root``, with the label and label-free: boxes, IoUs, seconds."""
    rows: list[dict[str, Any]] = []
    for canvas in localization.read_canvases(root):
        item, label = canvas.item, cropper.classes.index(str(canvas.item.label))
        pixels = np.asarray(Image.open(item.path).convert("RGB"))
        start = time.perf_counter()
        pyramid = localization.Pyramid(*cropper.label_levels(item, label))
        seconds = dict.fromkeys(FCNX_METHODS, time.perf_counter() - start)
        boxes = {"with": fcnx_boxes(cropper, pyramid, pixels)}
        seconds["fitted"] = time.perf_counter() - start
        free = top_category(pyramid.top_maps)
        if free != label:
            pyramid = localization.Pyramid(*cropper.label_levels(item, free))
        boxes["free"] = fcnx_boxes(cropper, pyramid, pixels)
        chosen = {"fcnx": cropper.classes[free]}
        for method, cam in cams.items():
            start = time.perf_counter()
            boxes["with"][method] = cam.box(pixels, label)
            seconds[method] = time.perf_counter() - start
            cam_free = cam.top_class(pixels)
            boxes["free"][method] = boxes["with"][method] if cam_free == label else cam.box(pixels, cam_free)
            chosen[method] = cam.classes[cam_free]
        rows.append(
            {
                "image": item.rel.as_posix(),
                "label": item.label,
                "truth": list(canvas.truth),
                "label_free": chosen,
                "boxes": {side: {m: list(map(float, b)) for m, b in boxes[side].items()} for side in SIDES},
                "iou": {
                    side: {m: float(metrics.box_iou(b, canvas.truth)) for m, b in boxes[side].items()} for side in SIDES
                },
                "seconds": seconds,
            }
        )
        progress(f"{item.rel.as_posix()}: " + ", ".join(f"{m} {rows[-1]['iou']['with'][m]:.2f}" for m in METHODS))
    return {"root": str(root), "nets": NETS, "rows": rows, "summary": summary(rows)}


def cams_of(methods: Sequence[str]) -> list[str]:
    """The Grad-CAM methods among ``methods``."""
    return [m for m in methods if m not in FCNX_METHODS]


def summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per side (with the label, label-free) and method the box accuracy; seconds per image; label-free hits."""
    truth = np.array([r["truth"] for r in rows])
    out: dict[str, Any] = {"images": len(rows)}
    for side in SIDES:
        out[side] = {
            m: metrics.box_accuracy(np.array([r["boxes"][side][m] for r in rows]), truth).as_dict() for m in METHODS
        }
    out["seconds"] = {m: float(np.mean([r["seconds"][m] for r in rows])) for m in METHODS}
    out["label_free_hits"] = {
        k: float(np.mean([r["label_free"][k] == r["label"] for r in rows])) for k in ("fcnx", *cams_of(METHODS))
    }
    return out


def markdown(result: dict[str, Any]) -> str:
    """The summary as one Markdown table and a line on the label-free category."""
    table = result["summary"]
    lines = [
        "| method | MaxBoxAccV2 | mean IoU | IoU>=0.5 | label-free MaxBoxAccV2 | label-free mean IoU | s/image |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for method in METHODS:
        w, f = table["with"][method], table["free"][method]
        lines.append(
            f"| {method} | {100 * w['maxboxacc']:.1f} | {w['mean_iou']:.3f} | {100 * w['acc@0.5']:.1f} | "
            f"{100 * f['maxboxacc']:.1f} | {f['mean_iou']:.3f} | {table['seconds'][method]:.3f} |"
        )
    hits = table["label_free_hits"]
    lines += [
        "",
        f"{table['images']} canvases. Label-free category is the label: fcnx {100 * hits['fcnx']:.1f}%, "
        + ", ".join(f"{m} {100 * hits[m]:.1f}%" for m in cams_of(METHODS))
        + ".",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="a benchmark root (fcnx bench data)")
    parser.add_argument("--kernel", type=int, default=56)
    parser.add_argument("--max-scale", type=float, default=4.0)
    parser.add_argument("--step", type=float, default=1.2)
    parser.add_argument("-o", "--out", type=Path, default=None, help="write the full result as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cropper = Cropper.from_nets(NETS, kernel=args.kernel, device="cpu", step=args.step, max_scale=args.max_scale)
    cams = {
        "Grad-CAM ensemble": GradCamEnsemble.from_nets(NETS),
        "Grad-CAM ensemble (canvas size)": GradCamEnsemble.from_nets(NETS, at_image_size=True),
    }
    result = run(args.data, cropper, cams)
    result["settings"] = {"kernel": args.kernel, "max_scale": args.max_scale, "step": args.step}
    print(markdown(result))
    report.save_json(result, args.out)


if __name__ == "__main__":
    main()
