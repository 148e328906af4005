"""Real-photo check of ``fcnx crop --box``: the boxes fcnx gives beside what a user would try instead.

Photos bundled by scikit-image, scikit-learn and matplotlib (offline), these kinds of samples:

- *whole*: the annotated photos of :mod:`fcnx.testing.photos` (boxes drawn by looking);
- *pasted*: an annotated object cut from one photo, pasted at a seeded place and scale (long side
  30-60 % of the background's short side) into another photo; its box is where it was pasted (the pasted
  rectangle keeps a margin of its own photo around the object: its edge is the box, which flatters a box
  fitted to the image's edges, ``--box fitted``);
- *small* (``--small N``): the same with the long side 10-15 % of the short side;
- *fresh* (``--fresh``): three more whole photos of other packages, annotated after every parameter was
  chosen (:data:`FRESH`).

Methods, each with the sample's category and without one (label-free), on the default ensemble
EfficientNet-Lite0/1/2 (offline ImageNet weights) at kernel 224, pyramid step 1.2 up to 3x:
``square`` (the paper's rule, and the authors' votes-first), ``tight`` (``fcnx crop --box tight``: the
region of the nets' class maps), ``tight (windows)`` (the tight box of nets without class maps: where the
windows agree), ``fitted`` (``fcnx crop --box fitted``: the tight box snapped to the object's pixels),
an ensemble Grad-CAM box (:mod:`fcnx.bench.gradcam`, pytorch-grad-cam: each net at its native size on
the whole photo, the mean of the three maps, box of the largest region above half the peak), a centred
box of half the photo's sides, and the whole photo. Reported: mean IoU, share at IoU >= 0.5 and
>= 0.7, and seconds per image (one process, interleaved; fcnx's pyramid is shared by its three
boxes and timed once). Label-free: fcnx takes the ensemble's top class at its most confident cell,
Grad-CAM the top class of the nets' mean on the whole photo. A photo can hold several annotated
objects (the astronaut photo's shuttle and helmet; a pasted object's background keeps its own): the
label-free boxes are scored against the sample's object and, in a second column, against the object
their category names when it names another annotated object of the photo.

    OMP_NUM_THREADS=1 python benchmarks/real_photos.py --seed 0 --pasted 12 -o build/real_photos.json
    OMP_NUM_THREADS=1 python benchmarks/real_photos.py --pasted 0 --small 10 --sweep   # what each level costs and buys

Needs the ``bench`` extra (scikit-image, grad-cam). The tight box was chosen on synthetic canvases
and on the pasted photos of seed 1 (docs/crop.md), never on seed 0's.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from fcnx.bench import report
from fcnx.bench.gradcam import GradCamEnsemble
from fcnx.engine.cropper import Cropper
from fcnx.method import evidence, fitting, geometry, metrics
from fcnx.method.selection import level_from_probs, select, top_category, top_class_map
from fcnx.testing.photos import PHOTOS

NETS = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
#: photos pasted objects go into (grey ones repeated on three channels)
BACKGROUNDS = ("astronaut", "chelsea", "coffee", "stereo_motorcycle", "rocket", "camera", "hubble_deep_field", "grass")
#: annotated objects that are cut out and pasted (never into their own photo)
OBJECTS = ("coffee", "astronaut_shuttle", "astronaut_helmet", "rocket", "motorcycle", "camera")
METHODS = (
    "square (paper)",
    "square (votes-first)",
    "tight (windows)",
    "tight",
    "fitted",
    "Grad-CAM ensemble",
    "centred box",
    "whole image",
)
#: the methods that share fcnx's one pyramid (timed once; the fitted box adds its own seconds)
FCNX_METHODS = METHODS[:5]

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Sample:
    """One photo with one object: its pixels, the category to look for, the classes that count, the true box."""

    name: str
    kind: str  # "whole", "pasted", "small" or "fresh"
    pixels: np.ndarray
    category: str
    accept: tuple[str, ...]
    truth: Box
    #: the photo's other annotated objects still visible (at least half of each box uncovered): classes that
    #: count and box, so a label-free category that names one of them is scored on that object's box
    others: tuple[tuple[tuple[str, ...], Box], ...] = ()

    def named(self, category: str) -> Box | None:
        """The box of the annotated object ``category`` names (this one's first), ``None`` if it names none."""
        if category in self.accept:
            return self.truth
        return next((box for accept, box in self.others if category in accept), None)


def _photo(loader: str) -> np.ndarray:
    from skimage import data

    image = getattr(data, loader)()
    image = image[0] if isinstance(image, tuple) else image
    return np.ascontiguousarray(np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image[:, :, :3])


#: long side of a pasted object, as shares of the background's short side: pasted and small samples
PASTED_SIDES = (0.3, 0.6)
SMALL_SIDES = (0.10, 0.15)


#: whole photos of other packages, boxes drawn by looking once the methods' parameters were chosen:
#: name -> (loader, category, classes that count, box x, y, w, h)
FRESH = {
    # scikit-learn's china.jpg: the Tower of Buddhist Incense, finial to the lowest roof above the trees
    "china": ("sklearn:china.jpg", "palace", ("palace", "monastery", "stupa", "bell cote"), (60, 28, 312, 365)),
    # scikit-learn's flower.jpg: the dahlia in front (ImageNet names no dahlia: its nearest flower class)
    "flower": ("sklearn:flower.jpg", "daisy", ("daisy",), (168, 85, 279, 275)),
    # matplotlib's grace_hopper.jpg: the uniform's jacket, shoulders down (the cap is left out)
    "grace_hopper": ("matplotlib:grace_hopper.jpg", "military uniform", ("military uniform",), (10, 318, 502, 282)),
}


def _fresh_photo(loader: str) -> np.ndarray:
    package, name = loader.split(":")
    if package == "sklearn":
        from sklearn.datasets import load_sample_image

        return np.ascontiguousarray(load_sample_image(name)[:, :, :3])
    import matplotlib.cbook

    with matplotlib.cbook.get_sample_data(name) as f:
        return np.asarray(Image.open(f).convert("RGB"))


def samples(pasted: int, seed: int, small: int = 0, fresh: bool = False) -> list[Sample]:
    """The whole annotated photos, then ``pasted`` seeded pastes, then ``small`` seeded small pastes
    (long side 10-15 % of the short side; their own random stream, so the others do not change), then
    with ``fresh`` the photos of :data:`FRESH`."""
    out = [
        Sample(p.name, "whole", p.load(), p.category, p.accept, _box(p.box), _others(p.loader, p.name))
        for p in PHOTOS.values()
    ]
    out += _pastes(pasted, np.random.default_rng(seed), PASTED_SIDES, "pasted")
    out += _pastes(small, np.random.default_rng([seed, 1]), SMALL_SIDES, "small")
    if fresh:
        out += [
            Sample(name, "fresh", _fresh_photo(loader), category, accept, _box(box))
            for name, (loader, category, accept, box) in FRESH.items()
        ]
    return out


def _box(box: Sequence[float]) -> Box:
    x, y, w, h = map(float, box)
    return x, y, w, h


def _others(loader: str, name: str, covered: Box | None = None) -> tuple[tuple[tuple[str, ...], Box], ...]:
    """The annotated objects of photo ``loader`` but ``name`` whose box keeps at least half its area outside ``covered``."""
    out = []
    for p in PHOTOS.values():
        if p.loader != loader or p.name == name:
            continue
        box = _box(p.box)
        hidden = 0.0
        if covered is not None:
            (x, y, w, h), (cx, cy, cw, ch) = box, covered
            hidden = max(0.0, min(x + w, cx + cw) - max(x, cx)) * max(0.0, min(y + h, cy + ch) - max(y, cy)) / (w * h)
        if hidden <= 0.5:
            out.append((p.accept, box))
    return tuple(out)


def _pastes(count: int, rng: np.random.Generator, sides: tuple[float, float], kind: str) -> list[Sample]:
    out = []
    for k in range(count):
        obj = PHOTOS[OBJECTS[k % len(OBJECTS)]]
        backgrounds = [b for b in BACKGROUNDS if b != obj.loader]
        where = backgrounds[int(rng.integers(len(backgrounds)))]
        background = _photo(where).copy()
        height, width = background.shape[:2]
        piece = obj.crop()
        long_side = rng.uniform(*sides) * min(height, width)
        f = long_side / max(piece.shape[:2])
        w, h = max(8, round(piece.shape[1] * f)), max(8, round(piece.shape[0] * f))
        x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
        background[y : y + h, x : x + w] = np.asarray(Image.fromarray(piece).resize((w, h), Image.Resampling.BICUBIC))
        name = f"{obj.name}_in_{where}_{k}" + ("" if kind == "pasted" else f"_{kind}")
        truth = _box((x, y, w, h))
        out.append(Sample(name, kind, background, obj.category, obj.accept, truth, _others(where, "", truth)))
    return out


class Fcnx:
    """The ensemble's pyramid of one photo, all classes kept, so every rule and box comes from one pass."""

    def __init__(self, max_scale: float | str) -> None:
        self.cropper = Cropper.from_nets(NETS, kernel=224, device="cpu", max_scale=max_scale)
        self.fit_seconds = 0.0  # of the last fitted box

    def scales(self, height: int, width: int) -> list[float]:
        """The pyramid ``fcnx crop`` runs on a photo of that size (decoded at full size) with these settings."""
        cropper, kernel = self.cropper, self.cropper.ensemble.kernel
        if cropper.max_scale == geometry.AUTO:
            return geometry.auto_scales(height, width, kernel, cropper.step, min(height, width))
        return geometry.pyramid_scales(height, width, kernel, cropper.step, float(cropper.max_scale))

    def pyramid(
        self, pixels: np.ndarray
    ) -> tuple[list[tuple[float, tuple[int, int]]], list[np.ndarray], list, list[float]]:
        """The levels ``(scale, scaled size)``, their probabilities (nets x classes x h x w), the nets'
        class maps (:class:`~fcnx.engine.ensemble.NetCells` of the one image) and seconds."""
        height, width = pixels.shape[:2]
        kernel = self.cropper.ensemble.kernel
        tensor = torch.from_numpy(pixels).permute(2, 0, 1)[None]
        levels, probs, cells, seconds = [], [], [], []
        for scale in self.scales(height, width):
            scaled = geometry.scaled_size(height, width, scale, kernel)
            levels.append((scale, scaled))
            start = time.perf_counter()
            with torch.no_grad():
                level_probs, level_cells = self.cropper.ensemble.outputs_at(tensor, scaled)
            probs.append(level_probs[0].numpy())
            cells.append(level_cells)
            seconds.append(time.perf_counter() - start)
        return levels, probs, cells, seconds

    def boxes(
        self,
        size: tuple[int, int],
        levels: list,
        probs: list[np.ndarray],
        cells: list,
        category: int,
        pixels: np.ndarray | None = None,
    ) -> dict[str, Box]:
        """Each fcnx box of ``category``; the fitted box too with the photo's ``pixels`` (its seconds: :attr:`fit_seconds`)."""
        kernel, stride = self.cropper.ensemble.kernel, self.cropper.ensemble.stride
        sizes = [s for _, s in levels]
        label = [level_from_probs(p, category) for p in probs]
        maps = [
            [evidence.ClassMap(c.logits[0, category].numpy(), c.size, c.stride, c.origin) for c in level]
            for level in cells
        ]
        out = {}
        for rule in ("paper", "votes-first"):
            choice = select(label, rule)
            window = geometry.cell_to_box(choice.cell, size, sizes[choice.level], kernel, stride)
            out[f"square ({rule})"] = window
            if rule == "paper":
                out["tight (windows)"] = evidence.tight_of(choice, size, sizes, kernel, stride, window).box
                tight = evidence.tight_of(choice, size, sizes, kernel, stride, window, class_maps=maps)
                out["tight"] = tight.box
                if pixels is not None:
                    start = time.perf_counter()
                    out["fitted"] = fitting.fit_tight(pixels, size, tight)
                    self.fit_seconds = time.perf_counter() - start
        return out


def run(items: Sequence[Sample], max_scale: float | str, progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Every method on every sample, with and without the category; IoUs, hits and seconds."""
    fcnx = Fcnx(max_scale)
    gradcam = GradCamEnsemble.from_nets(NETS)
    classes = fcnx.cropper.classes
    rows = []
    for sample in items:
        size = sample.pixels.shape[:2]
        height, width = size
        wanted = classes.index(sample.category)
        start = time.perf_counter()
        levels, probs, cells, _ = fcnx.pyramid(sample.pixels)
        free = top_category([top_class_map(p) for p in probs])
        boxes = {"with": fcnx.boxes(size, levels, probs, cells, wanted, sample.pixels)}
        elapsed = time.perf_counter() - start
        seconds = {m: elapsed - fcnx.fit_seconds for m in FCNX_METHODS} | {"fitted": elapsed}
        boxes["free"] = fcnx.boxes(size, levels, probs, cells, free, sample.pixels)
        start = time.perf_counter()
        cam_free = gradcam.top_class(sample.pixels)
        boxes["with"]["Grad-CAM ensemble"] = gradcam.box(sample.pixels, wanted)
        seconds["Grad-CAM ensemble"] = time.perf_counter() - start
        boxes["free"]["Grad-CAM ensemble"] = gradcam.box(sample.pixels, cam_free)
        for side in boxes.values():
            side["centred box"] = (width / 4, height / 4, width / 2, height / 2)
            side["whole image"] = (0.0, 0.0, float(width), float(height))
        seconds |= {"centred box": 0.0, "whole image": 0.0}
        named = {m: sample.named(classes[free]) for m in FCNX_METHODS} | {
            "Grad-CAM ensemble": sample.named(classes[cam_free])
        }
        row = {
            "name": sample.name,
            "kind": sample.kind,
            "size": [height, width],
            "truth": list(sample.truth),
            "category": sample.category,
            "label_free": {"fcnx": classes[free], "Grad-CAM ensemble": classes[cam_free]},
            "iou": {
                side: {m: float(metrics.box_iou(b, sample.truth)) for m, b in side_boxes.items()}
                for side, side_boxes in boxes.items()
            }
            | {
                "free, named object": {
                    m: float(metrics.box_iou(b, named.get(m) or sample.truth)) for m, b in boxes["free"].items()
                }
            },
            "label_free_names_an_object": {m: named[m] is not None for m in ("tight", "Grad-CAM ensemble")},
            "boxes": {side: {m: list(b) for m, b in side_boxes.items()} for side, side_boxes in boxes.items()},
            "seconds": seconds,
            "accept": list(sample.accept),
        }
        rows.append(row)
        progress(f"{sample.name}: " + ", ".join(f"{m} {row['iou']['with'][m]:.2f}" for m in METHODS))
    return {"nets": NETS, "max_scale": max_scale, "rows": rows, "summary": summary(rows)}


def sweep(items: Sequence[Sample], progress: Callable[[str], None] = print) -> dict[str, Any]:
    """What each pyramid level costs and buys: the square and tight boxes (with the category) of the
    first ``n`` levels of ``--max-scale auto``'s pyramid for every ``n``, their IoU and the seconds of those levels."""
    fcnx = Fcnx(geometry.AUTO)
    rows = []
    for sample in items:
        levels, probs, cells, seconds = fcnx.pyramid(sample.pixels)
        wanted = fcnx.cropper.classes.index(sample.category)
        by_levels = []  # entry n - 1: the first n levels
        for n in range(1, len(levels) + 1):
            boxes = fcnx.boxes(sample.pixels.shape[:2], levels[:n], probs[:n], cells[:n], wanted)
            by_levels.append(
                {
                    "square": float(metrics.box_iou(boxes["square (paper)"], sample.truth)),
                    "tight": float(metrics.box_iou(boxes["tight"], sample.truth)),
                    "seconds": float(sum(seconds[:n])),
                }
            )
        rows.append({"name": sample.name, "kind": sample.kind, "by_levels": by_levels})
        progress(f"{sample.name}: {len(levels)} levels, {by_levels[-1]['seconds']:.1f} s")
    return {"nets": NETS, "rows": rows}


def sweep_markdown(result: dict[str, Any], step: float = 1.2) -> str:
    """Per kind of sample, one row per level count: largest scale, smallest window, seconds per image, mean IoUs."""
    lines = []
    for kind in ("whole", "pasted", "small"):
        rows = [r for r in result["rows"] if r["kind"] == kind]
        if not rows:
            continue
        lines += [
            f"{kind} ({len(rows)} images):",
            "",
            "| levels | max scale | smallest window | s/image | square mean IoU | tight mean IoU | tight IoU>=0.5 |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for n in range(1, min(len(r["by_levels"]) for r in rows) + 1):
            at = [r["by_levels"][n - 1] for r in rows]
            tight = np.array([a["tight"] for a in at])
            lines.append(
                f"| {n} | {step ** (n - 1):.2f} | {100 / step ** (n - 1):.0f}% | "
                f"{np.mean([a['seconds'] for a in at]):.2f} | {np.mean([a['square'] for a in at]):.3f} | "
                f"{tight.mean():.3f} | {100 * np.mean(tight >= 0.5):.0f}% |"
            )
        lines.append("")
    return "\n".join(lines)


def summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per subset (all, whole, pasted), side (with category, label-free) and method: mean IoU, shares, seconds."""
    out: dict[str, Any] = {}
    for subset in ("all", "whole", "pasted", "small", "fresh"):
        chosen = [r for r in rows if subset == "all" or r["kind"] == subset]
        if not chosen:
            continue
        table: dict[str, Any] = {}
        for side in ("with", "free", "free, named object"):
            for method in METHODS:
                ious = np.array([r["iou"][side][method] for r in chosen])
                table.setdefault(side, {})[method] = {
                    "mean_iou": float(ious.mean()),
                    "iou>=0.5": float(np.mean(ious >= 0.5)),
                    "iou>=0.7": float(np.mean(ious >= 0.7)),
                    "seconds": float(np.mean([r["seconds"][method] for r in chosen])),
                }
        table["label_free_hits"] = {
            m: float(np.mean([r["label_free"][m] in r["accept"] for r in chosen]))
            for m in ("fcnx", "Grad-CAM ensemble")
        }
        table["label_free_names_an_object"] = {
            m: float(np.mean([r["label_free_names_an_object"][m] for r in chosen]))
            for m in ("tight", "Grad-CAM ensemble")
        }
        table["images"] = len(chosen)
        out[subset] = table
    return out


def markdown(result: dict[str, Any]) -> str:
    """The summary as Markdown tables."""
    lines = []
    for subset, table in result["summary"].items():
        lines += [
            f"### {subset} ({table['images']} images)",
            "",
            "| method | mean IoU | IoU>=0.5 | IoU>=0.7 | label-free mean IoU | label-free IoU>=0.5 "
            "| label-free, on the object named | s/image |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for method in METHODS:
            w, f, n = table["with"][method], table["free"][method], table["free, named object"][method]
            lines.append(
                f"| {method} | {w['mean_iou']:.3f} | {100 * w['iou>=0.5']:.0f}% | {100 * w['iou>=0.7']:.0f}% | "
                f"{f['mean_iou']:.3f} | {100 * f['iou>=0.5']:.0f}% | {n['mean_iou']:.3f} | {w['seconds']:.2f} |"
            )
        hits, names = table["label_free_hits"], table["label_free_names_an_object"]
        lines += [
            "",
            f"Label-free category accepted: fcnx {100 * hits['fcnx']:.0f}%, Grad-CAM ensemble "
            f"{100 * hits['Grad-CAM ensemble']:.0f}%; naming one of the photo's annotated objects (this one or "
            f"another still visible): fcnx {100 * names['tight']:.0f}%, Grad-CAM ensemble "
            f"{100 * names['Grad-CAM ensemble']:.0f}%.",
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pasted", type=int, default=12)
    parser.add_argument(
        "--small", type=int, default=0, help="also paste this many objects at 10-15%% of the short side"
    )
    parser.add_argument(
        "--fresh", action="store_true", help="also the whole photos of FRESH (scikit-learn, matplotlib)"
    )
    parser.add_argument("--max-scale", type=lambda v: v if v == geometry.AUTO else float(v), default=3.0)
    parser.add_argument("--sweep", action="store_true", help="IoU and seconds per pyramid level count instead")
    parser.add_argument("-o", "--out", type=Path, default=None, help="write the full result as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    items = samples(args.pasted, args.seed, args.small, args.fresh)
    if args.sweep:
        result = sweep(items)
        print(sweep_markdown(result))
        report.save_json(result, args.out)
        return
    result = run(items, args.max_scale)
    result["seed"] = args.seed
    print(markdown(result))
    report.save_json(result, args.out)


if __name__ == "__main__":
    main()
