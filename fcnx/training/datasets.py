"""Torch datasets for training: labelled items (:mod:`fcnx.io.datasets`) as resized, augmented pixels.

Images are read with :func:`fcnx.io.decoding.load_rgb` (EXIF-upright 8-bit RGB). An image that cannot be
read (corrupt, a zlib bomb, over the pixel budget, a FIFO or other special file in a class folder:
see :mod:`fcnx.io.decoding`) is skipped by the training loop and counted, never a crash nor a hang:
:class:`ImageDataset` returns label ``-1`` for it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fcnx.errors import FcnxError, UsageError
from fcnx.io import decoding
from fcnx.io.datasets import few
from fcnx.io.discovery import ImageItem

#: label of a sample whose image could not be read (the training loop drops it and counts it)
UNREADABLE = -1


def train_transform(size: int, augment: bool = True, interpolation: str = "bicubic") -> Callable[[Any], Any]:
    """PIL image -> ``3 x size x size`` uint8 tensor, with timm's ImageNet training augmentation.

    Random resized crop, horizontal flip and colour jitter (``augment``); without augmentation the
    whole image is squashed to the size. Normalization is left to the training loop (on the device).
    """
    from timm.data import create_transform

    if augment:
        return create_transform(size, is_training=True, interpolation=interpolation, use_prefetcher=True)
    return create_transform(
        size, is_training=False, interpolation=interpolation, crop_pct=1.0, crop_mode="squash", use_prefetcher=True
    )


class EvalResize:
    """``3 x H x W`` uint8 tensor -> ``3 x size x size`` float pixels, exactly as ``fcnx evaluate`` and ``fcnx crop`` resize.

    The whole image is squashed to the kernel with :func:`fcnx.engine.ensemble.resize` (bicubic,
    antialiased), so validation accuracy during training is the number ``fcnx evaluate`` reports.
    (A class, not a closure: data-loading processes started by *spawn* must be able to pickle it.)
    """

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, tensor: Any) -> Any:
        from fcnx.engine.ensemble import resize

        return resize(tensor[None], (self.size, self.size))[0].contiguous()


class ImageDataset:
    """A torch map-style dataset of ``(pixels, label, index)`` for labelled ``items``.

    ``pixels`` is a float ``3 x size x size`` tensor in ``[0, 255]``. With ``train=True`` the image goes
    through :func:`train_transform`, otherwise through :class:`EvalResize`. An unreadable image (or one
    its ``cut`` refuses) gives zeros and label :data:`UNREADABLE`; ``index`` says which item it was. ``cut(k, pixels, full_size,
    train)``, when given, cuts item ``k``'s pixels first (``fcnx train --crops``:
    :class:`fcnx.training.transforms.BoxCutter`).
    """

    def __init__(
        self,
        items: Sequence[ImageItem],
        classes: Sequence[str],
        size: int,
        *,
        train: bool,
        augment: bool = True,
        cut: Callable[[int, Any, tuple[int, int], bool], Any] | None = None,
    ) -> None:
        index = {name: k for k, name in enumerate(classes)}
        unknown = sorted({str(item.label) for item in items if item.label not in index})
        if unknown:
            raise UsageError(f"labels not in the class list: {few(unknown)}")
        self.items = list(items)
        self.labels = [index[str(item.label)] for item in self.items]  # every label is a class name: checked above
        self.size = size
        self.train = train
        self._transform = train_transform(size, augment) if train else EvalResize(size)
        self.cut = cut

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int) -> tuple[Any, int, int]:
        import torch
        from PIL import Image

        item = self.items[k]
        try:
            # training may decode a large JPEG at a reduced size; validation decodes it whole, as evaluate does
            # (a crop is a part of the image: decoded whole, so that it keeps its resolution)
            pixels, full = decoding.load_rgb(item.path, min_side=self.size if self.train and not self.cut else None)
            if self.cut is not None:
                pixels = self.cut(k, pixels, full, self.train)
        except FcnxError:
            return torch.zeros(3, self.size, self.size), UNREADABLE, k
        if self.train:
            tensor = self._transform(Image.fromarray(pixels))
        else:
            tensor = self._transform(torch.from_numpy(pixels).permute(2, 0, 1))
        return tensor.float(), self.labels[k], k
