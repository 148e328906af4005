"""The ensemble's pyramid of one photo kept on disk, so that box rules can be measured and tuned in numpy.

A benchmark runs the nets once per photo (:func:`compute`), saves the outputs of a few categories as one
``.npz`` (:func:`save`) and reads them back (:func:`load`) for every rule and parameter it tries: what
:class:`~fcnx.method.boxes.Pyramid` needs (per level the nets' probabilities of those categories, the
nets' votes, the top-class map, the class maps), plus the squashed whole-image view
(:data:`fcnx.method.boxes.WHOLE_VIEW`) and the seconds each level took.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fcnx.method import geometry
from fcnx.method.boxes import Pyramid
from fcnx.method.evidence import ClassMap
from fcnx.method.selection import Level, top_category, top_class_map

if TYPE_CHECKING:
    from fcnx.engine.ensemble import Ensemble


@dataclass
class Stored:
    """One photo's pyramid for a few ``categories`` (class indices), in scale order, and its whole-image view last."""

    size: tuple[int, int]
    kernel: int
    stride: int
    categories: list[int]
    scaled: list[tuple[int, int]]  # per level, the last one the whole-image view
    probs: list[np.ndarray] = field(repr=False)  # per level: nets x categories x h x w
    argmax: list[np.ndarray] = field(repr=False)  # per level: nets x h x w, each net's top class
    top: list[tuple[np.ndarray, np.ndarray]] = field(repr=False)  # per level: top_class_map
    maps: list[list[tuple[np.ndarray, tuple[int, int], int, float]]] = field(repr=False)  # level, net: logits c x h x w
    seconds: list[float]

    @property
    def label_free(self) -> int:
        """The category ``fcnx crop`` takes without one (:func:`~fcnx.method.selection.top_category` of the pyramid)."""
        return top_category(self.top[:-1])

    @property
    def label_free_view(self) -> int:
        """The whole-image view's top class (:func:`~fcnx.method.selection.top_category` of that view alone): the
        category as the classifiers see the whole photo, measured against :attr:`label_free` (docs/crop.md)."""
        return top_category(self.top[-1:])

    def pyramid(self, category: int, whole: bool = True) -> Pyramid:
        """The :class:`~fcnx.method.boxes.Pyramid` of one stored ``category``, with or without the whole-image view."""
        k = self.categories.index(category)
        count = len(self.scaled) - (0 if whole else 1)
        levels = [Level(self.probs[i][:, k], self.argmax[i] == category) for i in range(count)]
        maps = [
            [ClassMap(values[k], size, stride, origin) for values, size, stride, origin in self.maps[i]]
            for i in range(count)
        ]
        return Pyramid(self.size, self.kernel, self.stride, self.scaled[:count], levels, maps, whole)


def compute(
    ensemble: Ensemble, pixels: np.ndarray, categories: Sequence[int], step: float = geometry.DEFAULT_STEP
) -> Stored:
    """Run the default pyramid (``step`` up to the default largest scale) and the whole-image view of ``pixels`` (``H x W x 3`` uint8)
    through ``ensemble``; keep ``categories`` and the label-free category."""
    import torch

    height, width = pixels.shape[:2]
    kernel = ensemble.kernel
    tensor = torch.from_numpy(np.array(pixels, dtype=np.uint8)).permute(2, 0, 1)[None]  # a writable copy
    sizes = [
        geometry.scaled_size(height, width, s, kernel) for s in geometry.pyramid_scales(height, width, kernel, step)
    ]
    sizes.append((kernel, kernel))
    outputs = []
    for scaled in sizes:
        start = time.perf_counter()
        probs, cells = ensemble.outputs_at(tensor, scaled)
        outputs.append((probs[0].float().numpy(), cells, time.perf_counter() - start))
    top = [top_class_map(p) for p, _, _ in outputs]
    wanted = list(dict.fromkeys([*categories, top_category(top[:-1]), int(top[-1][1].flat[0])]))
    return Stored(
        (height, width),
        kernel,
        ensemble.stride,
        wanted,
        sizes,
        [p[:, wanted] for p, _, _ in outputs],
        [p.argmax(axis=1).astype(np.int16) for p, _, _ in outputs],
        top,
        [
            [(c.logits[0, wanted].float().numpy(), c.size, c.stride, c.origin) for c in cells if c is not None]
            for _, cells, _ in outputs
        ],
        [s for _, _, s in outputs],
    )


def save(stored: Stored, path: Path) -> None:
    """``stored`` as one ``.npz`` at ``path``."""
    arrays: dict[str, np.ndarray] = {
        "size": np.array(stored.size),
        "grid": np.array([stored.kernel, stored.stride]),
        "categories": np.array(stored.categories),
        "scaled": np.array(stored.scaled),
        "seconds": np.array(stored.seconds),
    }
    for i in range(len(stored.scaled)):
        arrays[f"probs{i}"] = stored.probs[i].astype(np.float32)
        arrays[f"argmax{i}"] = stored.argmax[i]
        arrays[f"topv{i}"], arrays[f"topc{i}"] = stored.top[i]
        for n, (values, size, stride, origin) in enumerate(stored.maps[i]):
            arrays[f"map{i}_{n}"] = values.astype(np.float32)
            arrays[f"mapgrid{i}_{n}"] = np.array([size[0], size[1], stride, origin])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)  # type: ignore[arg-type]


def load(path: Path) -> Stored:
    """A :class:`Stored` saved by :func:`save`."""
    with np.load(path) as z:
        count = len(z["scaled"])
        maps = []
        for i in range(count):
            nets = sorted(int(k.split("_")[1]) for k in z.files if k.startswith(f"map{i}_"))
            level = []
            for n in nets:
                rows, cols, stride, origin = z[f"mapgrid{i}_{n}"]
                level.append((z[f"map{i}_{n}"], (int(rows), int(cols)), int(stride), float(origin)))
            maps.append(level)
        kernel, stride = (int(v) for v in z["grid"])
        return Stored(
            (int(z["size"][0]), int(z["size"][1])),
            kernel,
            stride,
            [int(c) for c in z["categories"]],
            [(int(a), int(b)) for a, b in z["scaled"]],
            [z[f"probs{i}"] for i in range(count)],
            [z[f"argmax{i}"] for i in range(count)],
            [(z[f"topv{i}"], z[f"topc{i}"]) for i in range(count)],
            maps,
            [float(s) for s in z["seconds"]],
        )
