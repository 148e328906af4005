"""Score maps of ``fcnx crop --heatmaps-npy``: one float32 ``.npy`` in [0, 1] per image and category,
at the image's upright size: the format weakly-supervised-localization tools read (wsolevaluation
loads ``<image id>.npy``, the image id being its path with the extension)."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import IO

import numpy as np

from fcnx.engine.cropper import Box
from fcnx.method.evidence import resize_map


def map_name(rel: PurePosixPath, category: str, boxes: int) -> PurePosixPath:
    """``<rel>.npy`` for an image's one box, ``<rel>.<category>.npy`` when it has several (unsafe characters as ``_``)."""
    if boxes == 1:
        return rel.with_name(f"{rel.name}.npy")
    return rel.with_name(f"{rel.name}.{re.sub(r'[^A-Za-z0-9._-]+', '_', category)}.npy")


def save_map(f: IO[bytes], box: Box, size: tuple[int, int]) -> None:
    """Write ``box``'s score map (kept by a cropper with heatmaps) at ``size`` as float32 ``.npy``."""
    if box.evidence is None:
        raise ValueError("the box carries no score map (crop with keep_heatmaps=True)")
    np.save(f, resize_map(box.evidence, size).astype(np.float32), allow_pickle=False)
