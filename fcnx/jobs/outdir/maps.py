"""What ``fcnx crop --heatmaps-npy`` adds to an OUTDIR: score maps, one float32 ``maps/<file>.npy`` in [0, 1]
per image and category at the image's upright size, the format weakly-supervised-localization tools read (wsolevaluation
loads ``<image id>.npy``, the image id being its path with the extension)."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from fcnx.engine.results import Box


def encode_map(box: Box, size: tuple[int, int]) -> bytes:
    """``box``'s score map (kept by a cropper with heatmaps) at ``size`` as float32 ``.npy`` bytes."""
    if box.evidence is None:
        raise ValueError("the box carries no score map (crop with keep_heatmaps=True)")
    from fcnx.method.evidence import resize_map

    buffer = io.BytesIO()
    np.save(buffer, resize_map(box.evidence, size).astype(np.float32), allow_pickle=False)
    return buffer.getvalue()
