"""The picture of docs/crop.md's "Tight boxes" section: photos, their square, tight and fitted boxes, the evidence.

    OMP_NUM_THREADS=1 python benchmarks/real_photos_figure.py --photo astronaut_shuttle --photo motorcycle -o docs/tight.png

The default ensemble (EfficientNet-Lite0/1/2, kernel 224, up to 3x) looks for each photo's annotated
category (fcnx.testing.photos); one row per photo. Needs matplotlib, scikit-image and OpenCV (the fitted box).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from fcnx.engine.cropper import Cropper
from fcnx.method import evidence, metrics
from fcnx.testing.photos import PHOTOS, AnnotatedPhoto

NETS = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]


def draw(cropper: Cropper, photo: AnnotatedPhoto, boxes: Axes, heatmap: Axes) -> dict[str, float]:
    """One photo's boxes on ``boxes``, its object map on ``heatmap``; the boxes' IoUs with the annotation."""
    pixels = photo.load()
    box = cropper.crop_image(pixels, [photo.category]).boxes[0]
    if box.evidence is None or box.fitted is None:
        raise SystemExit("the cropper kept no score map or fitted box")
    kinds = {"square (paper)": box.window, "tight": box.tight, "fitted": box.fitted}
    iou = {k: float(metrics.box_iou(b, photo.box)) for k, b in kinds.items()}
    boxes.imshow(pixels)
    for (x, y, w, h), colour, style, label in (
        (photo.box, "#2ca02c", "-", "annotated box"),
        (box.window, "#d62728", "--", f"square (paper), IoU {iou['square (paper)']:.2f}"),
        (box.tight, "#1f77b4", "-", f"tight, IoU {iou['tight']:.2f}"),
        (box.fitted, "#ff7f0e", ":", f"fitted, IoU {iou['fitted']:.2f}"),
    ):
        boxes.add_patch(Rectangle((x, y), w, h, fill=False, edgecolor=colour, linestyle=style, lw=2.5, label=label))
    boxes.legend(loc="lower left", fontsize=9)
    boxes.set_title(f"{photo.name}: '{photo.category}'")
    heat = evidence.resize_map(box.evidence, pixels.shape[:2])
    heatmap.imshow(pixels)
    heatmap.imshow(np.ma.masked_equal(heat, 0.0), cmap="inferno", alpha=0.7, vmin=0, vmax=1)
    x, y, w, h = box.tight
    heatmap.add_patch(Rectangle((x, y), w, h, fill=False, edgecolor="#1f77b4", lw=2.5))
    heatmap.set_title("object map: the class maps' evidence (--heatmaps-npy)")
    return iou


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photo", action="append", choices=sorted(PHOTOS), help="repeat for more rows")
    parser.add_argument("-o", "--out", type=Path, default=Path("docs/tight.png"))
    args = parser.parse_args()
    names = args.photo or ["astronaut_shuttle"]
    cropper = Cropper.from_nets(NETS, kernel=224, device="cpu", heatmaps=True, box="fitted")
    figure = Figure(figsize=(12, 4.4 * len(names)), layout="constrained")
    rows = figure.subplots(len(names), 2, squeeze=False)
    for name, (left, right) in zip(names, rows):
        iou = draw(cropper, PHOTOS[name], left, right)
        print(f"{name}: " + ", ".join(f"{k} IoU {v:.3f}" for k, v in iou.items()))
    for a in rows.ravel():
        a.set_axis_off()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=72, metadata={"Software": None})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
