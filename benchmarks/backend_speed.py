"""Speed of the backends and precisions against today's eager torch path and an ensemble Grad-CAM.

One process, the default ensemble (EfficientNet-Lite0/1/2 at kernel 224, default pyramid), real
photos (the scikit-image photos of ``fcnx.testing.photos`` and scikit-learn's two sample photos,
long side 512 like Food-101), each cropped for its own category. Per image, every variant runs
right after the others (interleaved, so a busy machine slows all of them alike), at 1 and at 2
threads:

- ``eager``: torch, batch norms unfolded (fcnx before this change), the reference;
- ``folded``: torch with batch norms folded (the torch default now);
- ``onnxruntime fp32``, ``openvino fp32``, ``openvino bf16`` (bf16 only with native CPU support);
- ``folded + early stop``: ``--early-stop`` (stop at the first level where every net votes for the
  category), with whether the box is the same as without;
- ``Grad-CAM``: pytorch-grad-cam on each net at its native size on the whole image (one forward
  and backward per net, the box of the largest region above half the peak), for the same category.

Reported: median seconds per image, images/s, the median and spread (min-max) over images of the
per-image ratio against ``eager`` and against ``Grad-CAM``, the FLOPs of one image's pyramid
(torch.utils.flop_counter, a multiply-add counts 2) and the GFLOP/s achieved. Needs the ``bench``
extra (pip install 'fcnx[bench,openvino,onnx]').

    python benchmarks/backend_speed.py                 # 1 and 2 threads, 8 photos: 4+ minutes per thread count
    python benchmarks/backend_speed.py --threads 1 --photos 4
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from fcnx.engine import backends
from fcnx.engine.cropper import Cropper
from fcnx.engine.ensemble import Ensemble
from fcnx.engine.fcn import FCN, imagenet_classes, load_fcn
from fcnx.engine.results import Box

NETS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
KERNEL = 224
LONG_SIDE = 512
#: variant -> (backend, precision, fold, early stop)
VARIANTS = {
    "eager": ("torch", "fp32", False, False),
    "folded": ("torch", "fp32", True, False),
    "folded + early stop": ("torch", "fp32", True, True),
    "onnxruntime fp32": ("onnxruntime", "fp32", True, False),
    "openvino fp32": ("openvino", "fp32", True, False),
    "openvino bf16": ("openvino", "bf16", True, False),
}


def photos(count: int) -> list[tuple[str, np.ndarray, str]]:
    """``(name, H x W x 3 uint8 at long side 512, ImageNet category)``: annotated photos, then sklearn's."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    from fcnx.testing.photos import PHOTOS

    found = [(p.name, p.load(), p.category) for p in PHOTOS.values()]
    sample = load_sample_images()
    found += [("china", sample.images[0], "palace"), ("flower", sample.images[1], "daisy")]
    out = []
    for name, pixels, category in found[:count]:
        h, w = pixels.shape[:2]
        scale = LONG_SIDE / max(h, w)
        size = (round(w * scale), round(h * scale))
        out.append((name, np.array(Image.fromarray(pixels).resize(size, Image.BICUBIC)), category))
    return out


class GradCamEnsemble:
    """Grad-CAM of each net at its native size on the whole image, summed; the box of the largest region > peak/2."""

    def __init__(self, fcns: list[FCN]) -> None:
        from pytorch_grad_cam import GradCAM

        self.fcns = fcns
        self.cams = [GradCAM(model=f.classifier.eval(), target_layers=[f.classifier.conv_head]) for f in fcns]

    def box(self, pixels: np.ndarray, category: int) -> tuple[int, int, int, int]:
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
        from skimage.measure import label, regionprops

        image = torch.from_numpy(pixels).permute(2, 0, 1)[None].float()
        h, w = pixels.shape[:2]
        total = np.zeros((h, w), dtype=np.float32)
        for fcn, cam in zip(self.fcns, self.cams):
            size = fcn.spec.default_size
            x = fcn.normalize(F.interpolate(image, size=(size, size), mode="bicubic", antialias=True).clamp(0, 255))
            heat = cam(input_tensor=x, targets=[ClassifierOutputTarget(category)])[0]
            total += F.interpolate(torch.from_numpy(heat)[None, None], size=(h, w), mode="bilinear")[0, 0].numpy()
        regions = regionprops(label(total > total.max() / 2))
        y0, x0, y1, x1 = max(regions, key=lambda r: r.area).bbox
        return x0, y0, x1 - x0, y1 - y0


def croppers() -> dict[str, Cropper]:
    """One cropper per variant, each with its own nets (the runtimes take torch's thread count)."""
    names = [n for n, v in VARIANTS.items() if v[1] == "fp32" or backends.native_bf16()]
    out = {}
    for name in names:
        backend, precision, fold, early = VARIANTS[name]
        fcns = [load_fcn(n, "pretrained", kernel=KERNEL) for n in NETS]
        ensemble = Ensemble(fcns, fold=fold, backend=backend, precision=precision)
        out[name] = Cropper(ensemble, early_stop=early)
    return out


def timed(run: Callable[..., Any], *args: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = run(*args)
    return time.perf_counter() - start, result


def pyramid_flops(cropper: Cropper, pixels: np.ndarray, category: str) -> int:
    """FLOPs of the nets over one image's pyramid (torch, a multiply-add counts 2)."""
    with FlopCounterMode(display=False) as counter:
        cropper.crop_image(pixels, [category])
    return counter.get_total_flops()


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):5.2f}x [{min(values):.2f}-{max(values):.2f}]"


def run(threads: int, images: list[tuple[str, np.ndarray, str]]) -> None:
    torch.set_num_threads(threads)
    crops = croppers()
    gradcam = GradCamEnsemble([load_fcn(n, "pretrained", kernel=KERNEL) for n in NETS])
    classes = imagenet_classes()
    seconds: dict[str, list[float]] = {name: [] for name in [*crops, "Grad-CAM"]}
    same_box: dict[str, int] = {name: 0 for name in crops}
    stopped: dict[str, int] = {name: 0 for name in crops}
    for cropper in crops.values():  # warm-up: one-time costs (allocations, the runtimes' first run)
        cropper.crop_image(images[0][1], [images[0][2]])
    gradcam.box(images[0][1], classes.index(images[0][2]))
    for name, pixels, category in images:
        boxes: dict[str, Box] = {}
        for variant, cropper in crops.items():
            elapsed, result = timed(cropper.crop_image, pixels, [category])
            seconds[variant].append(elapsed)
            boxes[variant] = result.boxes[0]
        elapsed, _ = timed(gradcam.box, pixels, classes.index(category))
        seconds["Grad-CAM"].append(elapsed)
        ref = boxes["eager"]
        for variant, box in boxes.items():
            same_box[variant] += (box.level, box.cell) == (ref.level, ref.cell)
            stopped[variant] += box.stopped_early
        print(f"  {threads} thread(s): {name} done", file=sys.stderr, flush=True)
    flops = {
        early: pyramid_flops(crops["folded" + early], images[0][1], images[0][2]) for early in ("", " + early stop")
    }
    print(f"\n{threads} thread(s), {len(images)} photos, load average {os.getloadavg()[0]:.2f}")
    print(
        f"FLOPs of the first photo's pyramid ({images[0][0]}): {flops[''] / 1e9:.1f} GFLOP, "
        f"{flops[' + early stop'] / 1e9:.1f} GFLOP with --early-stop"
    )
    head = f"{'variant':28} {'s/image':>8} {'images/s':>9} {'vs eager, median [min-max]':>28} {'vs Grad-CAM':>22}"
    print(head + f" {'GFLOP/s (1st)':>13} {'same box':>9} {'stopped early':>13}")
    for variant, values in seconds.items():
        vs_eager = [e / v for e, v in zip(seconds["eager"], values)]
        vs_cam = [v / c for v, c in zip(values, seconds["Grad-CAM"])]
        work = flops[" + early stop" if variant.endswith(" + early stop") else ""]
        gflops = work / values[0] / 1e9 if variant in crops else float("nan")
        counts = f"{same_box[variant]}/{len(images)}" if variant in crops else ""
        early = f"{stopped[variant]}/{len(images)}" if variant in crops else ""
        print(
            f"{variant:28} {statistics.median(values):8.3f} {1 / statistics.median(values):9.2f} "
            f"{spread(vs_eager):>28} {spread(vs_cam):>22} {gflops:13.1f} {counts:>9} {early:>13}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--photos", type=int, default=9)
    args = parser.parse_args()
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((line.split(":", 1)[1].strip() for line in cpu.splitlines() if line.startswith("Model name")), "?")
    print(f"CPU {model}, native bf16: {backends.native_bf16()}, torch {torch.__version__}")
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    images = photos(args.photos)
    for threads in args.threads:
        run(threads, images)
    print(f"\nuptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")


if __name__ == "__main__":
    main()
