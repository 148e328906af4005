"""The picture of docs/crop.md's "Tight boxes" section: one photo, its square and tight boxes, the evidence.

    OMP_NUM_THREADS=1 python benchmarks/real_photos_figure.py --photo astronaut_shuttle -o docs/tight.png

The default ensemble (EfficientNet-Lite0/1/2, kernel 224, up to 3x) looks for the photo's annotated
category (fcnx.testing.photos); needs matplotlib and scikit-image.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from fcnx.engine.cropper import Cropper
from fcnx.method import evidence, metrics
from fcnx.testing.photos import PHOTOS

NETS = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photo", default="astronaut_shuttle", choices=sorted(PHOTOS))
    parser.add_argument("-o", "--out", type=Path, default=Path("docs/tight.png"))
    args = parser.parse_args()
    photo = PHOTOS[args.photo]
    pixels = photo.load()
    cropper = Cropper.from_nets(NETS, kernel=224, device="cpu", keep_heatmaps=True, box="tight")
    box = cropper.crop_image(pixels, [photo.category]).boxes[0]
    size = pixels.shape[:2]
    figure = Figure(figsize=(12, 4.4), layout="constrained")
    axes = figure.subplots(1, 2)
    iou = {k: float(metrics.box_iou(b, photo.box)) for k, b in (("square", box.window), ("tight", box.tight))}
    axes[0].imshow(pixels)
    for (x, y, w, h), colour, style, label in (
        (photo.box, "#2ca02c", "-", "annotated box"),
        (box.window, "#d62728", "--", f"square (paper), IoU {iou['square']:.2f}"),
        (box.tight, "#1f77b4", "-", f"tight, IoU {iou['tight']:.2f}"),
    ):
        axes[0].add_patch(Rectangle((x, y), w, h, fill=False, edgecolor=colour, linestyle=style, lw=2.5, label=label))
    axes[0].legend(loc="lower left", fontsize=9)
    axes[0].set_title(f"{photo.name}: '{photo.category}'")
    if box.evidence is None:
        raise SystemExit("the cropper kept no score map")
    heat = evidence.resize_map(box.evidence, size)
    axes[1].imshow(pixels)
    axes[1].imshow(np.ma.masked_equal(heat, 0.0), cmap="inferno", alpha=0.7, vmin=0, vmax=1)
    x, y, w, h = box.tight
    axes[1].add_patch(Rectangle((x, y), w, h, fill=False, edgecolor="#1f77b4", lw=2.5))
    axes[1].set_title("object map: the class maps' evidence (--heatmaps-npy)")
    for a in axes:
        a.set_axis_off()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=72, metadata={"Software": None})
    print(f"wrote {args.out}: square IoU {iou['square']:.3f}, tight IoU {iou['tight']:.3f}")


if __name__ == "__main__":
    main()
