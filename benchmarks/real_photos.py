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
EfficientNet-Lite0/1/2 (offline ImageNet weights) at kernel 224, pyramid step 1.2 up to 3x: every box
rule of ``fcnx crop --box`` (:data:`fcnx.method.boxes.RULES`, the paper's selection), an ensemble Grad-CAM
box (:mod:`fcnx.bench.gradcam`: each net at its native size on the whole photo, the mean of the three
maps, box of the largest region above half the peak), a centred box of half the photo's area, and the
whole photo. Reported per kind of sample and, for whole photos (not pastes), per size band of the object
(:data:`BANDS`): mean IoU, share at IoU >= 0.5, the share of the true box inside the box (coverage) and
the share of samples whose box keeps >= 90 % of it, label-free the same, and seconds per image (fcnx's
rules: the nets' pyramid, plus the whole-image view for the rules that read it, plus the rule's own
seconds; one process). Label-free: fcnx takes the ensemble's top class at its most confident cell (``--label-free
view``: the top class of its whole-image view instead), Grad-CAM
the top class of the nets' mean on the whole photo; their boxes are scored against the annotated object
their category names when it names one (a photo can hold several: the astronaut photo's shuttle and
helmet), else the sample's.

The nets run once per sample: with ``--cache DIR`` their outputs are kept there
(:mod:`fcnx.bench.pyramids`, one ``.npz`` per sample) so that rules and parameters are tried in numpy.

    OMP_NUM_THREADS=1 python benchmarks/real_photos.py --seed 0 --pasted 12 --fresh --cache build/pyramids -o build/real_photos.json
    OMP_NUM_THREADS=1 python benchmarks/real_photos.py --photos /work/photoset/tuning.json --pasted 0 --cache build/pyramids --sweep
    OMP_NUM_THREADS=1 python benchmarks/real_photos.py --photos /work/photoset/tuning.json --pasted 0 --no-skimage --cache build/pyramids --sweep fitted-object

Needs the ``bench`` extra (scikit-image, grad-cam). The tight box was chosen on synthetic canvases
and on the pasted photos of seed 1 (docs/crop.md), never on seed 0's; the object box on the tuning
photos of ``--photos`` (docs/crop.md), and so the fitted object box.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import itertools
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from fcnx.bench import pyramids, report
from fcnx.bench.gradcam import GradCamEnsemble
from fcnx.engine.ensemble import load_ensemble
from fcnx.engine.fcn import imagenet_classes
from fcnx.method import boxes, metrics
from fcnx.method.metrics import KEEPS
from fcnx.testing.photos import PHOTOS

NETS = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
#: photos pasted objects go into (grey ones repeated on three channels)
BACKGROUNDS = ("astronaut", "chelsea", "coffee", "stereo_motorcycle", "rocket", "camera", "hubble_deep_field", "grass")
#: annotated objects that are cut out and pasted (never into their own photo)
OBJECTS = ("coffee", "astronaut_shuttle", "astronaut_helmet", "rocket", "motorcycle", "camera")
#: the trivial boxes beside fcnx's and Grad-CAM's
BASELINES = ("Grad-CAM ensemble", "centred box", "whole image")
#: kinds of sample; the first three are whole photos
KINDS = ("whole", "fresh", "photo", "pasted", "small")
WHOLE_KINDS = KINDS[:3]
#: size bands of the object (its true box's share of the image) and their upper bounds
BANDS = (("< 15 %", 0.15), ("15-50 %", 0.5), ("> 50 %", float("inf")))
#: a method that is no box rule reads no whole-image view
WHOLE = boxes.Rule("baseline", boxes.RULES["square"].function, "")

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Sample:
    """One photo with one object: its pixels, the category to look for, the classes that count, the true box."""

    name: str
    kind: str  # one of KINDS
    pixels: np.ndarray
    category: str
    accept: tuple[str, ...]
    truth: Box
    #: the photo's other annotated objects still visible (at least half of each box uncovered): classes that
    #: count and box, so a label-free category that names one of them is scored on that object's box
    others: tuple[tuple[tuple[str, ...], Box], ...] = ()

    #: every instance of the category (the largest is ``truth``); a box is scored on the one it overlaps most
    instances: tuple[Box, ...] = ()

    def named(self, category: str) -> Box | None:
        """The box of the annotated object ``category`` names (this one's first), ``None`` if it names none."""
        if category in self.accept:
            return self.truth
        return next((box for accept, box in self.others if category in accept), None)

    def truth_for(self, box: Box, truth: Box | None = None) -> Box:
        """The true box ``box`` is scored on: ``truth``, else the instance it overlaps most (``truth`` for one instance)."""
        if truth is not None and truth != self.truth:
            return truth
        return max(self.instances or (self.truth,), key=lambda t: float(metrics.box_iou(box, t)))


def photoset(path: Path) -> list[Sample]:
    """The annotated whole photos of a photo-set file: a JSON list of ``{id, file, category, accept, boxes}``
    (files relative to the list's folder or its ``img/``; boxes ``[x, y, w, h]``, one per instance)."""
    out = []
    for entry in json.loads(path.read_text(encoding="utf-8")):
        file = Path(entry["file"])
        if not file.is_absolute():
            file = next((p for p in (path.parent / file, path.parent / "img" / file) if p.exists()), path.parent / file)
        pixels = np.asarray(Image.open(file).convert("RGB"))
        found = [_box(b if isinstance(b, (list, tuple)) else (b["x"], b["y"], b["w"], b["h"])) for b in entry["boxes"]]
        main = max(found, key=lambda b: b[2] * b[3])
        accept = tuple(entry.get("accept") or (entry["category"],))
        out.append(Sample(str(entry["id"]), "photo", pixels, entry["category"], accept, main, (), tuple(found)))
    return out


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


def key(sample: Sample) -> str:
    """The file name of a sample's stored pyramid: its name and a digest of its pixels and category."""
    digest = hashlib.sha1(sample.pixels.tobytes() + sample.category.encode()).hexdigest()[:12]
    return f"{sample.kind}-{sample.name}-{digest}"


@dataclass
class Measured:
    """One sample through the nets once: its stored pyramid and its Grad-CAM boxes (with the category, label-free)."""

    stored: pyramids.Stored
    gradcam: dict[str, Any]


@functools.cache
def nets() -> tuple[Any, GradCamEnsemble]:
    """The ensemble (kernel 224, CPU) and its Grad-CAM, loaded once and only when a sample is not in the cache."""
    return load_ensemble(NETS, kernel=224, device="cpu"), GradCamEnsemble.from_nets(NETS)


def measure(sample: Sample, cache: Path | None) -> Measured:
    """The sample's pyramid (:func:`fcnx.bench.pyramids.compute`) and Grad-CAM boxes, read from ``cache`` when there."""
    stem = None if cache is None else cache / key(sample)
    if stem is not None and stem.with_suffix(".npz").exists() and stem.with_suffix(".json").exists():
        return Measured(pyramids.load(stem.with_suffix(".npz")), json.loads(stem.with_suffix(".json").read_text()))
    ensemble, gradcam = nets()
    wanted = [ensemble.classes.index(c) for c in dict.fromkeys((sample.category, *sample.accept))]
    stored = pyramids.compute(ensemble, sample.pixels, wanted)
    start = time.perf_counter()
    with_category = gradcam.box(sample.pixels, wanted[0])
    seconds = time.perf_counter() - start
    free = gradcam.top_class(sample.pixels)
    cam = {"with": list(with_category), "free": list(gradcam.box(sample.pixels, free)), "category": free}
    cam["seconds"] = seconds
    if stem is not None:
        pyramids.save(stored, stem.with_suffix(".npz"))
        stem.with_suffix(".json").write_text(json.dumps(cam))
    return Measured(stored, cam)


def fcnx_boxes(
    stored: pyramids.Stored, category: int, pixels: np.ndarray, methods: dict[str, Callable[[boxes.Found], Box]]
) -> tuple[dict[str, Box], dict[str, float]]:
    """Each method's box of ``category`` (the paper's selection) and the seconds each took on top of the nets."""
    found = stored.pyramid(category).select()
    found.pixels = pixels
    out, seconds = {}, {}
    for name, function in methods.items():
        start = time.perf_counter()
        out[name] = function(found)
        seconds[name] = time.perf_counter() - start
    return out, seconds


def coverage(box: Box, truth: Box) -> float:
    """The share of the true box inside ``box`` (:func:`fcnx.method.metrics.box_coverage`)."""
    return float(metrics.box_coverage(box, truth))


def band(sample: Sample) -> str:
    """The sample's size band: the true box's share of the image (:data:`BANDS`)."""
    share = sample.truth[2] * sample.truth[3] / (sample.pixels.shape[0] * sample.pixels.shape[1])
    return next(name for name, upper in BANDS if share < upper)


def run(
    items: Sequence[Sample],
    cache: Path | None = None,
    progress: Callable[[str], None] = print,
    methods: dict[str, Callable[[boxes.Found], Box]] | None = None,
    label_free: str = "cell",
) -> dict[str, Any]:
    """Every method on every sample, with and without the category (``label_free``: ``cell``, the top class at the
    most confident cell as ``fcnx crop`` takes it, or ``view``, the whole-image view's top class): boxes, IoUs,
    coverage, seconds."""
    methods = methods or {name: r.function for name, r in boxes.RULES.items()}
    classes = list(imagenet_classes())
    rows = []
    for sample in items:
        height, width = sample.pixels.shape[:2]
        measured = measure(sample, cache)
        stored, cam = measured.stored, measured.gradcam
        wanted = classes.index(sample.category)
        free = stored.label_free_view if label_free == "view" else stored.label_free
        found = {"with": fcnx_boxes(stored, wanted, sample.pixels, methods)}
        found["free"] = fcnx_boxes(stored, free, sample.pixels, methods)
        nets_seconds = sum(stored.seconds[:-1])
        seconds = {
            m: nets_seconds + (stored.seconds[-1] if boxes.RULES.get(m, WHOLE).whole_view else 0.0) + s
            for m, s in found["with"][1].items()
        }
        seconds |= {"Grad-CAM ensemble": cam["seconds"], "centred box": 0.0, "whole image": 0.0}
        sides = {side: dict(b) for side, (b, _) in found.items()}
        sides["with"]["Grad-CAM ensemble"], sides["free"]["Grad-CAM ensemble"] = _box(cam["with"]), _box(cam["free"])
        for side in sides.values():
            side["centred box"] = centred(height, width)
            side["whole image"] = (0.0, 0.0, float(width), float(height))
        named = {m: sample.named(classes[free]) for m in methods} | {
            "Grad-CAM ensemble": sample.named(classes[cam["category"]])
        }
        row = {
            "name": sample.name,
            "kind": sample.kind,
            "band": band(sample),
            "size": [height, width],
            "truth": list(sample.truth),
            "truths": [list(t) for t in sample.instances or (sample.truth,)],
            "category": sample.category,
            "label_free": {"fcnx": classes[free], "Grad-CAM ensemble": classes[cam["category"]]},
            "iou": {
                side: {m: float(metrics.box_iou(b, sample.truth_for(b))) for m, b in side_boxes.items()}
                for side, side_boxes in sides.items()
            }
            | {
                "free, named object": {
                    m: float(metrics.box_iou(b, sample.truth_for(b, named.get(m)))) for m, b in sides["free"].items()
                }
            },
            "coverage": {
                side: {m: coverage(b, sample.truth_for(b)) for m, b in side_boxes.items()}
                for side, side_boxes in sides.items()
            }
            | {
                "free, named object": {
                    m: coverage(b, sample.truth_for(b, named.get(m))) for m, b in sides["free"].items()
                }
            },
            "label_free_names_an_object": {m: named[m] is not None for m in ("tight", "Grad-CAM ensemble")},
            "boxes": {side: {m: list(b) for m, b in side_boxes.items()} for side, side_boxes in sides.items()},
            "seconds": seconds,
            "accept": list(sample.accept),
        }
        if len(sample.instances) > 1:
            row["instances"] = instance_scores(stored, wanted, sample)
        rows.append(row)
        progress(f"{sample.name}: " + ", ".join(f"{m} {v:.2f}" for m, v in row["iou"]["with"].items()))
    return {"nets": NETS, "methods": [*methods, *BASELINES], "rows": rows, "summary": summary(rows)}


#: ``--instances`` values measured on photos with several instances
INSTANCES = (1, 3, 5, 10)


def matched(pred: Sequence[Box], truths: Sequence[Box], iou: float = 0.5) -> int:
    """How many true boxes a predicted one matches at IoU >= ``iou`` (greedy, each used once, predictions in order)."""
    free = list(truths)
    hits = 0
    for box in pred:
        scores = [float(metrics.box_iou(box, t)) for t in free]
        if scores and max(scores) >= iou:
            free.pop(int(np.argmax(scores)))
            hits += 1
    return hits


def instance_scores(stored: pyramids.Stored, category: int, sample: Sample) -> dict[str, dict[str, float]]:
    """Per ``--instances`` value of :data:`INSTANCES` and box rule: recall and precision at IoU 0.5 of the boxes."""
    found = stored.pyramid(category).select()
    found.pixels = sample.pixels
    out: dict[str, dict[str, float]] = {}
    for name, r in boxes.RULES.items():
        for count in INSTANCES:
            pred = [b for b, _ in boxes.instances(found, count, r.function)]
            hits = matched(pred, sample.instances)
            out[f"{name} x{count}"] = {"recall": hits / len(sample.instances), "precision": hits / len(pred)}
    return out


def instances_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """Mean recall and precision at IoU 0.5 over the samples with several instances, per rule and ``--instances``."""
    chosen = [r for r in rows if "instances" in r]
    if not chosen:
        return ""
    lines = [
        f"### several instances ({len(chosen)} photos, {sum(len(r['truths']) for r in chosen)} instances)",
        "",
        "| box, --instances | recall at IoU 0.5 | precision at IoU 0.5 |",
        "|---|---:|---:|",
    ]
    for method in chosen[0]["instances"]:
        recall = np.mean([r["instances"][method]["recall"] for r in chosen])
        precision = np.mean([r["instances"][method]["precision"] for r in chosen])
        lines.append(f"| {method} | {100 * recall:.0f}% | {100 * precision:.0f}% |")
    return "\n".join([*lines, ""])


def centred(height: int, width: int) -> Box:
    """The centred box of half the image's area (sides times 1/sqrt(2))."""
    w, h = width / np.sqrt(2), height / np.sqrt(2)
    return (width - w) / 2, (height - h) / 2, w, h


def summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per subset (all, each kind, each size band of the whole photos), side and method: mean IoU, shares, coverage, seconds."""
    subsets: dict[str, list[dict[str, Any]]] = {"all": list(rows)}
    for kind in KINDS:
        subsets[kind] = [r for r in rows if r["kind"] == kind]
    for name, _ in BANDS:
        subsets[f"whole photos, object {name}"] = [r for r in rows if r["kind"] in WHOLE_KINDS and r["band"] == name]
    out: dict[str, Any] = {}
    for subset, chosen in subsets.items():
        if not chosen:
            continue
        table: dict[str, Any] = {}
        for side in ("with", "free", "free, named object"):
            for method in chosen[0]["iou"][side]:
                ious = np.array([r["iou"][side][method] for r in chosen])
                cover = np.array([r["coverage"][side][method] for r in chosen])
                table.setdefault(side, {})[method] = {
                    "mean_iou": float(ious.mean()),
                    "iou>=0.5": float(np.mean(ious >= 0.5)),
                    "iou>=0.7": float(np.mean(ious >= 0.7)),
                    "coverage": float(cover.mean()),
                    "keeps>=90%": float(np.mean(cover >= KEEPS)),
                    "seconds": float(np.mean([r["seconds"][method] for r in chosen])),
                }
        table["label_free_hits"] = {
            m: float(np.mean([r["label_free"][m] in r["accept"] for r in chosen]))
            for m in ("fcnx", "Grad-CAM ensemble")
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
            "| method | mean IoU | IoU>=0.5 | keeps object (mean) | keeps >= 90 % | label-free mean IoU "
            "| label-free keeps >= 90 % | s/image |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for method in table["with"]:
            w, f = table["with"][method], table["free, named object"][method]
            lines.append(
                f"| {method} | {w['mean_iou']:.3f} | {100 * w['iou>=0.5']:.0f}% | {100 * w['coverage']:.0f}% | "
                f"{100 * w['keeps>=90%']:.0f}% | {f['mean_iou']:.3f} | {100 * f['keeps>=90%']:.0f}% | {w['seconds']:.2f} |"
            )
        hits = table["label_free_hits"]
        lines += [
            "",
            f"Label-free category accepted: fcnx {100 * hits['fcnx']:.0f}%, Grad-CAM ensemble "
            f"{100 * hits['Grad-CAM ensemble']:.0f}% (label-free boxes scored on the annotated object their category "
            "names, else on the sample's).",
            "",
        ]
    return "\n".join(lines)


#: per box rule, the parameters ``--sweep RULE`` tries
SWEEP = {
    "object": {
        "span": (0.0, 1.0, 1.44),
        "threshold": (0.05, 0.1, 0.15, 0.2, 0.3),
        "pad": (0.0, 0.1, 0.2, 0.3),
        "gate": (0.0, 0.25, 0.5, 0.75, 1.0),
    },
    "fitted-object": {
        "gate": (0.5, 0.75, 1.0),
        "threshold": (0.1, 0.2, 0.3),
        "pad": (0.0, 0.05, 0.1, 0.15),
        "snap": (0.6, 0.8, 2.0),
    },
}


def sweep_methods(name: str = "object") -> dict[str, Callable[[boxes.Found], Box]]:
    """Box rule ``name`` at every combination of its :data:`SWEEP`, named by its parameters."""
    grid = SWEEP[name]
    out: dict[str, Callable[[boxes.Found], Box]] = {}
    for values in itertools.product(*grid.values()):
        chosen = dict(zip(grid, values))
        label = f"{name} " + " ".join(f"{k}={v}" for k, v in chosen.items())
        out[label] = functools.partial(boxes.RULES[name].function, **chosen)
    return out


def sweep_markdown(result: dict[str, Any], subsets: Sequence[str]) -> str:
    """The swept methods ranked by mean IoU plus share keeping >= 90 % over ``subsets`` (one column each)."""
    summary = result["summary"]
    subsets = [s for s in subsets if s in summary]
    methods = list(summary[subsets[0]]["with"])

    def score(m: str) -> float:
        return float(
            np.mean([summary[s]["with"][m]["mean_iou"] + summary[s]["with"][m]["keeps>=90%"] for s in subsets])
        )

    lines = ["| method | " + " | ".join(f"{s}: IoU / keeps" for s in subsets) + " |", "|---" * (len(subsets) + 1) + "|"]
    for m in sorted(methods, key=score, reverse=True)[:25]:
        cells = [
            f"{summary[s]['with'][m]['mean_iou']:.3f} / {100 * summary[s]['with'][m]['keeps>=90%']:.0f}%"
            for s in subsets
        ]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
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
    parser.add_argument("--photos", type=Path, action="append", default=[], help="a photo-set JSON file (photoset)")
    parser.add_argument("--no-skimage", action="store_true", help="leave out scikit-image's annotated photos")
    parser.add_argument("--cache", type=Path, default=None, help="keep each sample's pyramid here (.npz)")
    parser.add_argument(
        "--cache-only", action="store_true", help="only run the nets into --cache (no boxes, nothing scored)"
    )
    parser.add_argument("--only-cached", action="store_true", help="leave out the samples not in --cache yet")
    parser.add_argument(
        "--sweep",
        nargs="?",
        const="object",
        choices=list(SWEEP),
        help="this box rule at every parameter of SWEEP instead",
    )
    parser.add_argument(
        "--label-free",
        choices=("cell", "view"),
        default="cell",
        help="label-free category: top class at the most confident cell (fcnx crop's) or of the whole-image view",
    )
    parser.add_argument("-o", "--out", type=Path, default=None, help="write the full result as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    items = samples(args.pasted, args.seed, args.small, args.fresh)
    if args.no_skimage:
        items = [s for s in items if s.kind != "whole"]
    for path in args.photos:
        items += photoset(path)
    if args.cache_only:
        for sample in items:
            measure(sample, args.cache)
        return
    if args.only_cached and args.cache is not None:
        items = [s for s in items if (args.cache / key(s)).with_suffix(".json").exists()]
    if args.sweep:
        methods = sweep_methods(args.sweep) | {"tight": boxes.RULES["tight"].function}
        result = run(items, args.cache, progress=lambda _: None, methods=methods, label_free=args.label_free)
        print(sweep_markdown(result, ["all", *(f"whole photos, object {name}" for name, _ in BANDS), "pasted"]))
        report.save_json(result, args.out)
        return
    result = run(items, args.cache, label_free=args.label_free)
    result["seed"] = args.seed
    print(markdown(result))
    print(instances_markdown(result["rows"]))
    report.save_json(result, args.out)


if __name__ == "__main__":
    main()
