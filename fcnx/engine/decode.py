"""Decoding for the crop engine: each image read once, EXIF-upright RGB, at no more than the pyramid needs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from fcnx.errors import FcnxError
from fcnx.io.decoding import Source, read_rgb
from fcnx.io.discovery import ImageItem
from fcnx.method import geometry


def min_decode_side(kernel: int, max_scale: float | str) -> int:
    """The short side an image is decoded to at least: the largest pyramid level needs no more (``max_scale`` may be ``"auto"``)."""
    return math.ceil(kernel * geometry.largest_scale(max_scale))


#: a decoded image: ``(pixels 3 x h x w uint8, upright size, file read)``, or the one-line error naming the file
Decoded = tuple[torch.Tensor, tuple[int, int], Source] | str


def decode(item: ImageItem, min_side: int) -> Decoded:
    """``item``'s pixels (maybe decoded at reduced size, short side still >= ``min_side``), upright size and source."""
    try:
        image = read_rgb(item.path, min_side)
    except FcnxError as exc:
        return str(exc)
    return torch.from_numpy(image.pixels).permute(2, 0, 1).contiguous(), image.size, image.source


class Files(torch.utils.data.Dataset):
    """Decodes images (in DataLoader workers): ``(index, decoded)``."""

    def __init__(self, items: Sequence[ImageItem], min_side: int) -> None:
        self.items, self.min_side = items, min_side

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[int, Decoded]:
        return index, decode(self.items[index], self.min_side)


def identity(sample: Any) -> Any:
    return sample
