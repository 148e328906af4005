"""``--engine ray`` on this machine: 1 vs 2 CPU actors, the local engine beside them, and FLOPs per image.

Same images and nets as ``bench_crop.py`` (scikit-image photos resized like Food-101, long side
512; Inception-v3 + Xception at the common kernel 299, random fcnx checkpoints with 101 classes):

(a) FLOPs of each net over the pyramid of one image (``torch.utils.flop_counter``, multiply-adds
    counted as 2), and the CPU time it takes with one thread: what a GPU has to beat;
(b) the local engine with one torch thread (the reference, as ``fcnx crop`` runs it);
(c) the Ray engine on a local cluster of 2 CPUs with 1 and with 2 CPU actors (one thread each),
    crops written by the driver; each run's ``boxes.jsonl`` is compared with (b)'s.

    python benchmarks/bench_ray.py              # about 7 minutes on a 2-core CPU
    python benchmarks/bench_ray.py --images 4   # about 4 minutes
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).parent))
from bench_crop import CLASSES, KERNEL, NETS, machine, make_photos

from fcnx.engine.cropper import Cropper
from fcnx.engine.ensemble import load_ensemble, resize
from fcnx.engine.results import CropFailure
from fcnx.io.decoding import load_rgb
from fcnx.io.discovery import ImageItem, discover
from fcnx.jobs.outdir.outputs import CropOutputs
from fcnx.method import geometry
from fcnx.testing import random_checkpoint


def pyramid_flops(cropper: Cropper, path: Path) -> dict[str, tuple[float, float]]:
    """Per net: (GFLOPs over the image's pyramid, CPU seconds for it with the current threads)."""
    pixels, size = load_rgb(path, cropper.min_side)
    tensor = torch.from_numpy(pixels).permute(2, 0, 1)[None]
    kernel = cropper.ensemble.kernel
    levels = [
        geometry.scaled_size(*size, scale, kernel)
        for scale in geometry.pyramid_scales(*size, kernel, cropper.options.step, cropper.options.max_scale)
    ]
    figures = {}
    for name, fcn in zip(cropper.ensemble.names, cropper.ensemble.fcns):
        flops, seconds = 0, 0.0
        for scaled in levels:
            x = resize(tensor, scaled)
            with torch.inference_mode():
                with FlopCounterMode(display=False) as counter:
                    fcn(x)
                start = time.process_time()
                fcn(x)
                seconds += time.process_time() - start
            flops += counter.get_total_flops()
        figures[name] = (flops / 1e9, seconds)
    return figures


def crop_run(
    cropper_or_config, items: list[ImageItem], out: Path, actors: int | None = None
) -> tuple[float, float, float]:
    """Crop ``items`` into ``out`` as ``fcnx crop`` does (local engine, or Ray with ``actors``).

    Returns wall seconds, seconds until the first result, and CPU seconds (of the actors, with Ray).
    """
    outputs = CropOutputs(out, {"bench": True}, net_names=NETS, kernel=KERNEL, stride=32, expected_boxes=1)
    outputs.open()
    start, cpu, first = time.perf_counter(), time.process_time(), None
    if actors is None:
        results = cropper_or_config.crop_items(items)
    else:
        from fcnx.jobs.ray import RayStats, crop_on_ray

        stats = RayStats()
        options = dataclasses.replace(cropper_or_config, engine="ray", actors=actors)
        results = crop_on_ray(options, items, stats=stats)
    for result in results:
        if isinstance(result, CropFailure):
            raise RuntimeError(result.error)
        first = first or time.perf_counter() - start
        outputs.submit(result)
    outputs.flush()
    wall = time.perf_counter() - start
    outputs.finish([], order=items)
    return wall, first, time.process_time() - cpu if actors is None else stats.cpu_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8, help="Photos to crop in each run.")
    parser.add_argument("--max-scale", type=float, default=3.0)
    args = parser.parse_args()

    import ray

    from fcnx.engine.options import CropOptions

    torch.set_num_threads(1)
    print(f"machine: {machine()}; Ray {ray.__version__}; load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        make_photos(work / "photos", args.images)
        items = discover([work / "photos"])
        weights = {n: str(random_checkpoint(work / f"{n}.safetensors", n, CLASSES, input_size=KERNEL)) for n in NETS}
        options = {"max_scale": args.max_scale, "categories": [CLASSES[0]]}
        cropper = Cropper(load_ensemble(NETS, weights, kernel=KERNEL, device="cpu"), workers=0, **options)

        print("\n(a) FLOPs over the pyramid of one image (one thread)")
        for path in (items[0].path, items[1].path):
            figures = pyramid_flops(cropper, path)
            total = sum(g for g, _ in figures.values())
            parts = ", ".join(
                f"{n} {g:.1f} GFLOP in {s:.1f} s CPU ({g / s:.0f} GFLOP/s)" for n, (g, s) in figures.items()
            )
            print(f"  {path.name} {image_size(path)}: {total:.1f} GFLOP in all; {parts}")

        print(f"\n(b, c) cropping {len(items)} photos, crops written")
        wall, _, cpu = crop_run(cropper, items, work / "local")
        reference = (work / "local" / "boxes.jsonl").read_bytes()
        print(
            f"  local engine, 1 thread: {wall:.1f} s wall, {len(items) / wall:.3f} images/s, {cpu / len(items):.1f} s "
            f"CPU per image; load average {os.getloadavg()[0]:.1f}"
        )
        config = CropOptions(NETS, weights, KERNEL, **options)
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
        try:
            crop_run(config, items[:2], work / "warm", actors=2)  # start the workers once (imports, caches)
            base = None
            for actors in (1, 2):
                wall, first, cpu = crop_run(config, items, work / f"ray{actors}", actors=actors)
                same = (work / f"ray{actors}" / "boxes.jsonl").read_bytes() == reference
                base = base or wall
                print(
                    f"  Ray, {actors} CPU actor(s): {wall:.1f} s wall ({first:.1f} s to the first result), "
                    f"{len(items) / wall:.3f} images/s, speed-up {base / wall:.2f}x, {cpu / len(items):.1f} s actor CPU "
                    f"per image, {cpu / wall:.2f} cores busy; boxes.jsonl {'identical to' if same else 'DIFFERS from'} the local engine's; "
                    f"load average {os.getloadavg()[0]:.1f}"
                )
        finally:
            ray.shutdown()


def image_size(path: Path) -> str:
    from PIL import Image

    with Image.open(path) as image:
        return f"{image.width}x{image.height}"


if __name__ == "__main__":
    main()
