"""Crops as a training transform: each sample cut to its fcnx box, as the paper trains on its cropped images.

- :class:`CropToBox`: a torchvision-v2 transform that crops a sample (its image, and its boxes) to
  the sample's first ``BoundingBoxes``, with optional seeded jitter of position and scale;
- :class:`BoxCrops`: a map-style dataset of ``(image, label)`` over a Food-101 root or class folders
  (:func:`fcnx.io.datasets.open_dataset`), each image cut to its box from a ``boxes.jsonl``
  (read as ``fcnx evaluate --crops`` reads it: :func:`fcnx.jobs.scoring.read_boxes`);
- :class:`BoxCutter`: the same cut inside ``fcnx train --crops`` (:class:`fcnx.training.datasets.ImageDataset`).

Jitter draws from torch's generator (or the ``generator`` given), so a seeded run crops the same
way every time: ``fcnx train`` seeds every epoch and every data-loading process.

Example::

    from torchvision.transforms import v2
    from fcnx.training.transforms import BoxCrops, CropToBox

    train = BoxCrops("food-101/", "cropped/boxes.jsonl", split="train",
                     crop=CropToBox(jitter=0.1, scale=(0.9, 1.2)),
                     transform=v2.Compose([v2.RandomResizedCrop(299), v2.RandomHorizontalFlip(),
                                           v2.ToDtype(torch.float32, scale=True)]))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from fcnx.errors import FcnxError, UsageError
from fcnx.io.datasets import open_dataset
from fcnx.io.decoding import load_rgb
from fcnx.io.discovery import ImageItem
from fcnx.jobs.scoring import BoxIndex, read_boxes
from fcnx.method import geometry
from fcnx.method.geometry import XYWH


def jittered_box(
    box: XYWH,
    size: tuple[int, int],
    jitter: float = 0.0,
    scale: tuple[float, float] = (1.0, 1.0),
    generator: torch.Generator | None = None,
) -> tuple[int, int, int, int]:
    """Integer corners ``(x1, y1, x2, y2)`` of ``box`` ``(x, y, w, h)`` inside an image of ``size`` ``(height, width)``.

    Its centre moves by up to ``jitter`` times its width and height, its sides are multiplied by
    one factor drawn uniformly from ``scale``; without either it is exactly the crop of ``fcnx crop``
    (:func:`fcnx.method.geometry.pixel_box`).
    """
    x, y, w, h = box
    if jitter or scale != (1.0, 1.0):
        u = torch.rand(3, generator=generator, dtype=torch.float64).tolist()
        factor = scale[0] + (scale[1] - scale[0]) * u[2]
        cx, cy = x + w / 2 + (2 * u[0] - 1) * jitter * w, y + h / 2 + (2 * u[1] - 1) * jitter * h
        w, h = w * factor, h * factor
        x, y = cx - w / 2, cy - h / 2
    return geometry.pixel_box((x, y, w, h), size)


def _check(jitter: float, scale: tuple[float, float]) -> tuple[float, float]:
    lo, hi = (float(v) for v in scale)
    if jitter < 0 or not 0 < lo <= hi:
        raise UsageError(f"crop jitter must be >= 0 and the scale range 0 < lo <= hi, got {jitter}, {scale}")
    return lo, hi


class CropToBox(v2.Transform):
    """Crop a sample to its first bounding box (``tv_tensors.BoundingBoxes``, any format), optionally jittered.

    Everything in the sample that torchvision can crop is cropped alike (the image, the boxes);
    labels pass through. ``jitter`` and ``scale``: see :func:`jittered_box`.
    """

    def __init__(
        self, jitter: float = 0.0, scale: tuple[float, float] = (1.0, 1.0), generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        self.jitter, self.scale = jitter, _check(jitter, scale)
        self.generator = generator

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        boxes = [value for value in flat_inputs if isinstance(value, tv_tensors.BoundingBoxes)]
        if not boxes or not len(boxes[0]):
            raise ValueError("CropToBox needs a sample with a non-empty tv_tensors.BoundingBoxes")
        xywh = F.convert_bounding_box_format(boxes[0], new_format=tv_tensors.BoundingBoxFormat.XYWH)
        x1, y1, x2, y2 = jittered_box(
            tuple(xywh[0].tolist()), boxes[0].canvas_size, self.jitter, self.scale, self.generator
        )
        return {"top": y1, "left": x1, "height": y2 - y1, "width": x2 - x1}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(F.crop, inpt, **params)


def boxes_of(items: Sequence[ImageItem], index: BoxIndex) -> tuple[list[ImageItem], list[XYWH], list[ImageItem]]:
    """``items`` that have a box in ``index`` (for their label), their boxes, and the items without one."""
    kept, boxes, without = [], [], []
    for item in items:
        box = index.find(item)
        if box is None:
            without.append(item)
        else:
            kept.append(item)
            boxes.append(box)
    return kept, boxes, without


class BoxCutter:
    """The crop of ``fcnx train --crops``: item ``k``'s pixels cut to ``boxes[k]``.

    Training samples are jittered (``jitter``, ``scale``); validation samples are cut exactly as
    ``fcnx evaluate --crops`` cuts them. ``full`` is the image's full size, for pixels decoded at a
    reduced size (a JPEG's draft mode). A box that lies outside its image (of another version of it) is an
    :class:`~fcnx.errors.FcnxError`: the image is skipped. A plain class: data-loading processes pickle it.
    """

    def __init__(self, boxes: Sequence[XYWH], jitter: float = 0.0, scale: tuple[float, float] = (1.0, 1.0)) -> None:
        self.boxes, self.jitter, self.scale = list(boxes), jitter, _check(jitter, scale)

    def __call__(self, k: int, pixels: np.ndarray, full: tuple[int, int], train: bool) -> np.ndarray:
        fy, fx = pixels.shape[0] / full[0], pixels.shape[1] / full[1]
        x, y, w, h = self.boxes[k]
        if not (x < full[1] and y < full[0] and x + w > 0 and y + h > 0):
            raise FcnxError(
                f"its box (x={x:g}, y={y:g}, w={w:g}, h={h:g}) lies outside the {full[1]}x{full[0]} image: "
                f"a box of another version of it?"
            )
        box = (x * fx, y * fy, w * fx, h * fy)
        jitter, scale = (self.jitter, self.scale) if train else (0.0, (1.0, 1.0))
        x1, y1, x2, y2 = jittered_box(box, pixels.shape[:2], jitter, scale)
        return pixels[y1:y2, x1:x2]


class BoxCrops(torch.utils.data.Dataset):
    """``(image, label)`` of a dataset's ``split``, each image cut to its box from ``boxes`` (a ``boxes.jsonl``).

    ``root``: a Food-101 root or class folders (torchvision's ``ImageFolder`` layout); ``label`` is
    the class index in ``classes``. ``crop`` (default: an exact :class:`CropToBox`) receives
    ``(tv_tensors.Image, tv_tensors.BoundingBoxes)``, then ``transform`` the cropped image (a
    ``uint8`` ``3 x h x w`` ``tv_tensors.Image``). An image without a box is refused (one line
    naming the first, and how many), unless ``skip_missing``: then it is left out and listed in
    ``without_box``.
    """

    def __init__(
        self,
        root: str | Path,
        boxes: str | Path | BoxIndex,
        split: str = "train",
        crop: Callable[..., Any] | None = None,
        transform: Callable[[Any], Any] | None = None,
        skip_missing: bool = False,
    ) -> None:
        data = open_dataset(root, split)
        index = boxes if isinstance(boxes, BoxIndex) else read_boxes(Path(boxes))
        self.classes = data.classes
        self.items, self.boxes, self.without_box = boxes_of(data.items, index)
        if self.without_box and not skip_missing:
            raise UsageError(
                f"{len(self.without_box)} image(s) of the {split} split have no box, e.g. {self.without_box[0].path}"
                " (crop the same split first, or skip_missing=True)",
                None if isinstance(boxes, BoxIndex) else Path(boxes),
            )
        self.labels = [self.classes.index(str(item.label)) for item in self.items]
        self.crop = crop or CropToBox()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int) -> tuple[Any, int]:
        pixels, (height, width) = load_rgb(self.items[k].path)
        image = tv_tensors.Image(torch.from_numpy(pixels).permute(2, 0, 1))
        box = tv_tensors.BoundingBoxes([self.boxes[k]], format="XYWH", canvas_size=(height, width))
        image, _ = self.crop(image, box)
        return (self.transform(image) if self.transform else image), self.labels[k]
