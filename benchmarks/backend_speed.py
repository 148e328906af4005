"""Speed of the backends and precisions against today's eager torch path and an ensemble Grad-CAM.

One process, the default ensemble (EfficientNet-Lite0/1/2 at kernel 224, default pyramid), real
photos (the scikit-image photos of ``fcnx.testing.photos`` and scikit-learn's two sample photos,
long side 512 like Food-101), each cropped for its own category. Per image, every variant runs
right after the others (interleaved, so a busy machine slows all of them alike), at 1 and at 2
threads:

- ``eager``: torch, batch norms unfolded (fcnx before this change), the reference;
- ``folded``: torch with batch norms folded (the torch default now);
- ``onnxruntime fp32``, ``openvino fp32``, ``openvino bf16`` (bf16 only with native CPU support);
- ``openvino fp32 static``, ``onnxruntime fp32 static``: the runtime given each input shape's own
  static model at its first run, unbounded (:class:`StaticShapes`: OpenVINO's model reshaped, not in
  fcnx; ONNX Runtime's free dimensions overridden, as fcnx does after ``STATIC_AFTER`` runs of a
  shape, :mod:`fcnx.engine.backends.runtimes`); with ``--warm-all``
  the warm-up compiles every photo's shapes, so the timed pass measures the static models alone;
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
    python benchmarks/backend_speed.py --threads 1 --photos 4 --only folded --max-scale auto   # 13 levels

``--jemalloc N`` times ``fcnx crop`` (the default ensemble, the photos saved as PNG, each process on
``--threads``) N times with and N times without jemalloc (``LD_PRELOAD`` of :data:`JEMALLOC`, decay
off: :data:`MALLOC_CONF`), alternating, and checks that both write byte-identical outputs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from fcnx.engine import backends
from fcnx.engine.backends import runtimes
from fcnx.engine.backends.onnx_cache import onnx_file
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
    "onnxruntime fp32 static": ("onnxruntime", "fp32", True, False),
    "openvino fp32 static": ("openvino", "fp32", True, False),
}
#: the allocator measured by ``--jemalloc`` (Debian/Ubuntu: apt-get install libjemalloc2), and its settings
JEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
MALLOC_CONF = "dirty_decay_ms:-1,muzzy_decay_ms:-1"
#: variants counted by FLOPs (torch), against ``folded``
COUNTED = ("folded", "folded + early stop")


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


class StaticShapes:
    """An fp32 runner with one model per input shape, made at the shape's first run and kept (no bound)."""

    def __init__(self, fcn: FCN, backend: str, threads: int) -> None:
        self.fcn, self.backend, self.threads, self.path = fcn, backend, threads, str(onnx_file(fcn))
        self.models: dict[tuple[int, ...], Any] = {}

    def _model(self, shape: tuple[int, ...]) -> Any:
        if self.backend == "openvino":
            import openvino

            core = openvino.Core()
            model = core.read_model(self.path)
            model.reshape({0: list(shape)})
            config = {
                "INFERENCE_NUM_THREADS": self.threads,
                "INFERENCE_PRECISION_HINT": "f32",
                "PERFORMANCE_HINT": "LATENCY",
            }
            return core.compile_model(model, "CPU", config).create_infer_request()
        return runtimes._session(Path(self.path), self.threads, shape)  # the sessions --backend onnxruntime makes

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        return self._run(pixels)[0]

    def with_cells(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits, class maps)``, as the shipped runners give them."""
        logits, cells = self._run(pixels)
        return logits, cells

    def _run(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        x = np.ascontiguousarray(self.fcn.normalize(pixels).float().numpy())
        if x.shape not in self.models:
            self.models[x.shape] = self._model(x.shape)
        model = self.models[x.shape]
        if self.backend == "openvino":
            model.infer({0: x})
            count = len(model.model_outputs)
            return [torch.from_numpy(np.array(model.get_output_tensor(k).data)) for k in range(count)]
        return [torch.from_numpy(out) for out in model.run(None, {"pixels": x})]


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


def croppers(only: list[str] | None = None, max_scale: float | str = 3.0) -> dict[str, Cropper]:
    """One cropper per variant (``only`` those and ``eager``) with the pyramid up to ``max_scale``, each with its
    own nets (the runtimes take torch's thread count)."""
    names = [n for n, v in VARIANTS.items() if v[1] == "fp32" or backends.native_bf16()]
    out = {}
    for name in names:
        if only and name not in only and name != "eager":
            continue
        backend, precision, fold, early = VARIANTS[name]
        fcns = [load_fcn(n, "pretrained", kernel=KERNEL) for n in NETS]
        ensemble = Ensemble(fcns, fold=fold, backend=backend, precision=precision)
        if name.endswith(" static"):
            ensemble.runners = [StaticShapes(fcn, backend, torch.get_num_threads()) for fcn in ensemble.fcns]
        out[name] = Cropper(ensemble, early_stop=early, max_scale=max_scale)
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


def run(
    threads: int,
    images: list[tuple[str, np.ndarray, str]],
    only: list[str] | None = None,
    max_scale: float | str = 3.0,
    warm_all: bool = False,
) -> None:
    torch.set_num_threads(threads)
    crops = croppers(only, max_scale)
    gradcam = GradCamEnsemble([load_fcn(n, "pretrained", kernel=KERNEL) for n in NETS])
    classes = imagenet_classes()
    seconds: dict[str, list[float]] = {name: [] for name in [*crops, "Grad-CAM"]}
    same_box: dict[str, int] = {name: 0 for name in crops}
    same_tight: dict[str, int] = {name: 0 for name in crops}
    stopped: dict[str, int] = {name: 0 for name in crops}
    for name, cropper in crops.items():  # warm-up: one-time costs (allocations, the runtimes' first run)
        for _, pixels, category in images if warm_all else images[:1]:
            elapsed, _ = timed(cropper.crop_image, pixels, [category])
            print(f"  warm-up {name}: {elapsed:.2f} s", file=sys.stderr, flush=True)
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
            same_tight[variant] += box.tight == ref.tight
            stopped[variant] += box.stopped_early
        times = ", ".join(f"{variant} {values[-1]:.2f} s" for variant, values in seconds.items())
        print(f"  {threads} thread(s): {name} done: {times}", file=sys.stderr, flush=True)
    flops = {name: pyramid_flops(crops[name], images[0][1], images[0][2]) for name in COUNTED if name in crops}
    with FlopCounterMode(display=False) as counter:
        gradcam.box(images[0][1], classes.index(images[0][2]))
    # forward only: torch's counter overcounts the backward of grouped (depthwise) convolutions ~40x
    cam = {str(op): n for op, n in counter.get_flop_counts()["Global"].items() if "backward" not in str(op)}
    flops["Grad-CAM forward"] = sum(cam.values())
    print(
        f"\n{threads} thread(s), {len(images)} photos, --max-scale {max_scale}, load average {os.getloadavg()[0]:.2f}"
    )
    print(
        f"FLOPs for the first photo ({images[0][0]}): "
        + ", ".join(f"{name} {value / 1e9:.1f} GFLOP" for name, value in flops.items())
    )
    head = f"{'variant':28} {'s/image':>8} {'images/s':>9} {'vs eager, median [min-max]':>28} {'vs Grad-CAM':>22}"
    print(head + f" {'GFLOP/s (1st)':>13} {'same box':>9} {'same tight':>10} {'stopped early':>13}")
    for variant, values in seconds.items():
        vs_eager = [e / v for e, v in zip(seconds["eager"], values)]
        vs_cam = [v / c for v, c in zip(values, seconds["Grad-CAM"])]
        work = flops.get(variant, flops.get("folded", float("nan")) if variant in crops else float("nan"))
        gflops = work / values[0] / 1e9
        counts = f"{same_box[variant]}/{len(images)}" if variant in crops else ""
        tight = f"{same_tight[variant]}/{len(images)}" if variant in crops else ""
        early = f"{stopped[variant]}/{len(images)}" if variant in crops else ""
        print(
            f"{variant:28} {statistics.median(values):8.3f} {1 / statistics.median(values):9.2f} "
            f"{spread(vs_eager):>28} {spread(vs_cam):>22} {gflops:13.1f} {counts:>9} {tight:>10} {early:>13}",
            flush=True,
        )


def allocator(images: list[tuple[str, np.ndarray, str]], threads: int, pairs: int) -> None:
    """``fcnx crop`` of the photos with and without jemalloc, alternating: wall time ratio, identical outputs."""
    import tempfile

    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        for name, pixels, _ in images:
            Image.fromarray(pixels).save(folder / f"{name}.png")
        env = os.environ | {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        setups = {"glibc": env, "jemalloc": env | {"LD_PRELOAD": JEMALLOC, "MALLOC_CONF": MALLOC_CONF}}
        seconds: dict[str, list[float]] = {name: [] for name in setups}
        outputs: dict[str, set[bytes]] = {name: set() for name in setups}
        for k in range(pairs):
            for name in setups if k % 2 == 0 else reversed(setups):
                out = Path(tmp) / f"{name}-{k}"
                argv = [sys.executable, "-m", "fcnx", "crop", str(folder), "-o", str(out), "--workers", "0", "-q"]
                start = time.perf_counter()
                subprocess.run(argv, env=setups[name], check=True)
                seconds[name].append(time.perf_counter() - start)
                files = sorted(p for p in out.rglob("*") if p.is_file() and p.suffix != ".json")
                outputs[name].add(b"".join(p.relative_to(out).as_posix().encode() + p.read_bytes() for p in files))
        ratios = [g / j for g, j in zip(seconds["glibc"], seconds["jemalloc"])]
        identical = len(outputs["glibc"] | outputs["jemalloc"]) == 1
        print(
            f"\nfcnx crop of {len(images)} photos, {threads} thread(s), {pairs} runs each, load {os.getloadavg()[0]:.2f}: "
            f"glibc {statistics.median(seconds['glibc']):.1f} s, jemalloc {statistics.median(seconds['jemalloc']):.1f} s "
            f"(median); jemalloc faster by {spread(ratios)}; outputs byte-identical: {identical}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--photos", type=int, default=9)
    parser.add_argument("--only", nargs="+", choices=list(VARIANTS), default=None, help="variants (and eager)")
    parser.add_argument("--jemalloc", type=int, default=0, metavar="N", help="time fcnx crop N x with/without jemalloc")
    parser.add_argument("--max-scale", default="3", help="the pyramid's --max-scale: a number, or auto")
    parser.add_argument("--warm-all", action="store_true", help="warm up on every photo, not only the first")
    args = parser.parse_args()
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((line.split(":", 1)[1].strip() for line in cpu.splitlines() if line.startswith("Model name")), "?")
    print(f"CPU {model}, native bf16: {backends.native_bf16()}, torch {torch.__version__}")
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    images = photos(args.photos)
    for threads in args.threads if args.jemalloc else ():
        allocator(images, threads, args.jemalloc)
    for threads in args.threads if not args.jemalloc else ():
        scale = args.max_scale if args.max_scale == "auto" else float(args.max_scale)
        run(threads, images, args.only, scale, args.warm_all)
    print(f"\nuptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")


if __name__ == "__main__":
    main()
