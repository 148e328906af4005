"""Speed of ``fcnx evaluate`` (originals and crops) with ``--batch-size 1`` vs ``8``, side by side.

Real photos and boxes from scikit-image (:mod:`fcnx.testing.photos`), each photo saved as a PNG
file and listed several times (``--images`` in all), labelled with its ImageNet class; the net
is EfficientNet-Lite0 with its ImageNet weights (installed offline) at kernel 224 on the CPU. Both
runs go through :func:`fcnx.jobs.scoring.evaluate` exactly as the command does (decode, cut the
box, squash both regions to the kernel, classify), after one warm-up pass; the scores of the two
runs are checked to be equal.

    python benchmarks/bench_evaluate.py [--images 32] [--threads 1] [--repeats 3] [--net efficientnet_lite0]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path, PurePosixPath

import torch
from PIL import Image

from fcnx.engine.ensemble import load_ensemble
from fcnx.io.discovery import ImageItem
from fcnx.jobs.scoring import evaluate
from fcnx.testing.photos import PHOTOS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--net", default="efficientnet_lite0")
    parser.add_argument("--kernel", type=int, default=224)
    parser.add_argument("--sizes", default="1,8", help="batch sizes to compare")
    parser.add_argument("--repeats", type=int, default=3, help="rounds (sizes alternate); the best of each counts")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ensemble = load_ensemble([args.net], {args.net: "pretrained"}, kernel=args.kernel, device="cpu")
    photos = list(PHOTOS.values())
    with tempfile.TemporaryDirectory() as tmp:
        items, boxes = [], {}
        for photo in photos:
            Image.fromarray(photo.load()).save(Path(tmp) / f"{photo.name}.png")
        for k in range(args.images):
            photo = photos[k % len(photos)]
            path = Path(tmp) / f"{photo.name}.png"
            item = ImageItem(path, PurePosixPath(f"{k}/{path.name}"), photo.category)
            items.append(item)
            boxes[item.rel] = photo.box
        box_of = lambda item, pixels: boxes[item.rel]  # noqa: E731
        evaluate(ensemble, items[: len(photos)], box_of, batch_size=8)  # warm-up
        rates: dict[int, float] = {}
        rows = None
        for _ in range(args.repeats):
            for size in (int(s) for s in args.sizes.split(",")):
                start = time.perf_counter()
                result = evaluate(ensemble, items, box_of, batch_size=size)
                rates[size] = max(rates.get(size, 0.0), len(items) / (time.perf_counter() - start))
                assert rows is None or result.rows() == rows, "scores differ between batch sizes"
                rows = result.rows()
    print(
        f"{args.net} at kernel {args.kernel}, CPU, {args.threads} thread(s), {len(items)} images "
        f"(each: the original and its crop), best of {args.repeats}"
    )
    print("  ".join(f"batch {size}: {rate:6.2f} images/s" for size, rate in rates.items()))
    first, *others = rates
    for size in others:
        print(f"batch {size} / batch {first}: {rates[size] / rates[first]:.2f}x")


if __name__ == "__main__":
    main()
