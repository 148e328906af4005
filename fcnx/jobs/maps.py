"""What ``fcnx crop --box`` and ``--heatmaps-npy`` add to an OUTDIR: the boxes' extra columns of
``boxes.csv``, and score maps: one float32 ``maps/<file>.npy`` in [0, 1] per image and category at
the image's upright size, the format weakly-supervised-localization tools read (wsolevaluation
loads ``<image id>.npy``, the image id being its path with the extension)."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from fcnx.engine.results import Box

#: the boxes a record gives besides ``x, y, w, h`` (the fitted one only with ``--box fitted``)
KINDS = ("window", "tight", "fitted")
#: the columns ``boxes.csv`` gains after the per-net ones: which box ``x, y, w, h`` is, each kind, the map
BOX_COLUMNS = ["box_kind"] + [f"{kind}_{c}" for kind in KINDS for c in "xywh"] + ["map", "instance"]


def box_columns(record: dict[str, Any]) -> dict[str, Any]:
    """A record's values of :data:`BOX_COLUMNS` (empty where a record has no such box: runs before ``--box``)."""
    row = {k: record.get(k) for k in ("box_kind", "map", "instance")}
    row.update({f"{k}_{c}": v for k in KINDS for c, v in zip("xywh", record.get(k) or ())})
    return row


def encode_map(box: Box, size: tuple[int, int]) -> bytes:
    """``box``'s score map (kept by a cropper with heatmaps) at ``size`` as float32 ``.npy`` bytes."""
    if box.evidence is None:
        raise ValueError("the box carries no score map (crop with keep_heatmaps=True)")
    from fcnx.method.evidence import resize_map

    buffer = io.BytesIO()
    np.save(buffer, resize_map(box.evidence, size).astype(np.float32), allow_pickle=False)
    return buffer.getvalue()
