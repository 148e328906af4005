"""Crops encoded in their original's format (with its ICC profile and EXIF), and PNG pictures, as bytes."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

from fcnx.errors import FcnxError

SAVE_FORMATS = {"MPO": "JPEG"}  # formats Pillow reads but writes under another name
SAVE_OPTIONS: dict[str, dict[str, Any]] = {"JPEG": {"quality": 95}, "WEBP": {"quality": 95}}


def encode_crop(original: Image.Image, box: tuple[int, int, int, int], path: object = None) -> bytes:
    """The ``(x1, y1, x2, y2)`` pixels of ``original`` in its format (:class:`FcnxError` naming ``path`` if impossible)."""
    crop = original.crop(box)
    fmt = SAVE_FORMATS.get(original.format or "", original.format or "PNG")
    options = dict(SAVE_OPTIONS.get(fmt, {}))
    for key in ("icc_profile", "exif"):
        if original.info.get(key) and fmt in ("JPEG", "PNG", "WEBP", "TIFF"):
            options[key] = original.info[key]
    if fmt == "JPEG" and crop.mode not in ("RGB", "L", "CMYK"):
        crop = crop.convert("RGB")
    buffer = io.BytesIO()
    try:
        crop.save(buffer, format=fmt, **options)
    except (KeyError, OSError, ValueError) as exc:
        raise FcnxError(f"cannot write the crop as {fmt} ({exc})", path) from None
    return buffer.getvalue()


def encode_png(picture: Image.Image) -> bytes:
    """``picture`` as PNG bytes."""
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()
