"""Reading images from the wild safely: upright, first frame, 8-bit RGB, each problem one error naming the file.

Every problem with one file becomes an :class:`~fcnx.errors.FcnxError` naming that file, so a
long run can report it and go on. Images are read upright (EXIF orientation applied), first
frame only, and converted to 8-bit RGB: 16-bit samples are scaled (not clipped), CMYK and other
colour spaces converted, and transparency composited onto white.

Files are hostile until decoded: only regular files are opened (a FIFO named ``x.jpg`` is refused
unopened), an image may declare at most :func:`max_pixels` pixels, a JPEG must hold enough data
for the size it declares, and the file must stay the same while it is read; the :class:`Source`
read comes back with the pixels (:func:`read_rgb`) so that outputs name the file they came from.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import stat
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from fcnx.errors import FcnxError, UsageError, reason
from fcnx.io.files import kind_of

_ORIENTATION = 0x0112
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")


#: pixels (width x height, as the file declares them) an image may have unless FCNX_MAX_PIXELS says otherwise
DEFAULT_MAX_PIXELS = 50_000_000
MAX_PIXELS_VARIABLE = "FCNX_MAX_PIXELS"
#: a JPEG declaring more pixels than this per byte of compressed data lies about its size: a complete
#: Huffman-coded JPEG spends at least one bit per 8x8 block (512 pixels per byte), and libjpeg would
#: fill the missing blocks with grey
JPEG_PIXELS_PER_BYTE = 2048


@dataclass(frozen=True)
class Source:
    """Which file's bytes were decoded: its device and inode, size and modification time."""

    device: int
    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, status: os.stat_result) -> Source:
        return cls(status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)


@dataclass(frozen=True)
class RGBImage:
    """Decoded pixels ``H x W x 3`` uint8 (maybe at reduced size), the upright full ``(height, width)``, the file read."""

    pixels: np.ndarray
    size: tuple[int, int]
    source: Source


def max_pixels() -> int:
    """The pixel budget per image: ``FCNX_MAX_PIXELS`` when set, else :data:`DEFAULT_MAX_PIXELS`."""
    text = os.environ.get(MAX_PIXELS_VARIABLE, "").strip()
    if not text:
        return DEFAULT_MAX_PIXELS
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise UsageError(f"{MAX_PIXELS_VARIABLE} must be a whole number of pixels >= 1, got {text!r}")
    return int(text)


def _status(path: str | os.PathLike[str], missing: str = "no such file") -> os.stat_result:
    """``os.stat`` of ``path``, every failure a one-line error (``missing``: what to say when it is not there)."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        raise FcnxError(missing, path) from None
    except PermissionError:
        raise FcnxError("permission denied", path) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise FcnxError("symbolic link loop", path) from None
        raise FcnxError(f"cannot open ({reason(exc)})", path) from None
    except ValueError as exc:  # a NUL byte, from a list or a record: no file has such a name
        raise FcnxError(f"cannot open ({reason(exc)})", path) from None


def _check_regular(status: os.stat_result, path: str | os.PathLike[str]) -> None:
    if stat.S_ISDIR(status.st_mode):
        raise FcnxError("is a folder, not an image", path)
    if not stat.S_ISREG(status.st_mode):
        raise FcnxError(f"is {kind_of(status.st_mode)}, not a regular file: not opened", path)


@contextlib.contextmanager
def _opened(path: str | os.PathLike[str], expect: Source | None) -> Iterator[tuple[Image.Image, Source]]:
    """The image at ``path`` opened (header read, pixels not yet decoded) and the identity of the file it reads.

    Only regular files are opened (a FIFO named ``x.jpg`` would block for ever); the file is held
    open until the block ends, and when it ends the path must still name the same, unchanged file.
    With ``expect``, the file must be the one read before.
    """
    missing = "no such file" if expect is None else "deleted since it was read: no outputs written"
    _check_regular(_status(path, missing), path)
    try:  # non-blocking: a FIFO put there since the stat cannot hang the open
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except PermissionError:
        raise FcnxError("permission denied", path) from None
    except OSError as exc:
        _status(path, missing)  # names what happened in between (deleted, a link loop)
        raise FcnxError(f"cannot open ({reason(exc)})", path) from None
    with os.fdopen(fd, "rb") as file:
        before = os.fstat(fd)
        _check_regular(before, path)
        source = Source.of(before)
        if expect is not None and source != expect:
            raise FcnxError("replaced or modified since it was read: its box is from the earlier file", path)
        if before.st_size == 0:
            raise FcnxError("empty file, not an image", path)
        yield _identify(file, path, before.st_size), source
        after = Source.of(os.fstat(fd))
        now = _status(path, "deleted while it was being read")
        if (now.st_dev, now.st_ino) != (source.device, source.inode):
            raise FcnxError("replaced by another file while it was being read", path)
        if after != source or Source.of(now) != source:
            raise FcnxError("modified while it was being read", path)


def _identify(file: BinaryIO, path: str | os.PathLike[str], size: int) -> Image.Image:
    """Pillow's opening of ``file`` (its header), with the pixel budget and, for JPEG, the data-size check applied."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(file)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise FcnxError(f"over Pillow's decompression-bomb limit of {Image.MAX_IMAGE_PIXELS} pixels", path) from None
    except UnidentifiedImageError:
        raise FcnxError("not an image file Pillow can read", path) from None
    except PermissionError:  # some file systems refuse reads, not opens
        raise FcnxError("permission denied", path) from None
    except Exception as exc:  # a plugin's header parser: ValueError (zlib bombs in PNG chunks), SyntaxError, ...
        raise FcnxError(f"cannot open ({reason(exc)})", path) from None
    width, height = image.size
    budget = max_pixels()
    if width * height > budget:
        raise FcnxError(
            f"{width}x{height} is {width * height} pixels, over the budget of {budget} per image "
            f"(set {MAX_PIXELS_VARIABLE} to allow more)",
            path,
        )
    if image.format in ("JPEG", "MPO"):
        data = size - file.tell()  # Pillow stops reading a JPEG at its first scan: what is left is pixel data
        if width * height > JPEG_PIXELS_PER_BYTE * max(data, 1):
            raise FcnxError(
                f"declares {width}x{height} pixels but holds only {data} bytes of image data, too few for "
                f"that size (a lying header or a cut file)",
                path,
            )
    return image


def open_upright(path: str | os.PathLike[str], expect: Source | None = None) -> Image.Image:
    """The image at ``path``, decoded, first frame, turned upright by its EXIF orientation, in its own mode and format.

    Raises :class:`FcnxError` naming the file for missing, unreadable, empty, corrupt, truncated
    or non-image files, anything but a regular file, images over the pixel budget
    (:func:`max_pixels`) or Pillow's ``MAX_IMAGE_PIXELS``, JPEGs with too little data for their
    size, and a file replaced or modified while it is read. With ``expect``, the file must still
    be the one :func:`read_rgb` read (see :class:`Source`).
    """
    with _opened(path, expect) as (image, _):
        return _decode(image, path)


def _decode(image: Image.Image, path: str | os.PathLike[str]) -> Image.Image:
    try:
        with image, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.seek(0)
            image.load()
            try:
                upright = ImageOps.exif_transpose(image)
            except Exception:  # unreadable EXIF: keep the stored orientation, as upright_size() does
                upright = image.copy()
            upright.format = image.format  # copies forget it; crops are saved in it
            return upright
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise FcnxError(f"over Pillow's decompression-bomb limit of {Image.MAX_IMAGE_PIXELS} pixels", path) from None
    except Exception as exc:  # Pillow's decoders raise OSError, SyntaxError, ValueError, struct.error, EOFError...
        raise FcnxError(f"cannot decode image ({reason(exc)})", path) from None


def to_rgb(image: Image.Image) -> np.ndarray:
    """8-bit RGB pixels ``H x W x 3`` of a PIL image of any mode.

    16-bit grey is scaled to 8 bits; 32-bit integer grey likewise when its values exceed 255;
    float grey is clipped to ``[0, 255]`` (NaN is 0); alpha (including palette transparency) is composited
    onto white; every other mode goes through Pillow's own conversion.
    """
    mode = image.mode
    if mode in _SIXTEEN_BIT or mode in ("I", "F"):
        grey = np.asarray(image).astype(np.float64)
        if mode in _SIXTEEN_BIT or (mode == "I" and grey.max(initial=0) > 255):
            grey = grey / 257.0
        grey = np.nan_to_num(np.clip(np.rint(grey), 0, 255), nan=0.0).astype(np.uint8)  # NaN (float grey) as black
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.array(image, dtype=np.uint8)  # a writable copy (torch.from_numpy wants one)


def upright_size(image: Image.Image) -> tuple[int, int]:
    """``(height, width)`` of an opened JPEG (not yet transposed) once its EXIF orientation is applied.

    Only for formats whose EXIF is read at open: for others ``getexif`` decodes the pixels.
    """
    width, height = image.size
    try:
        orientation = image.getexif().get(_ORIENTATION, 1)
    except Exception:  # unreadable EXIF: Pillow's exif_transpose will ignore it as well
        orientation = 1
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)


def read_rgb(path: str | os.PathLike[str], min_side: int | None = None) -> RGBImage:
    """Upright 8-bit RGB pixels of the image at ``path``, its upright full size and the identity of the file read.

    With ``min_side``, a JPEG larger than needed is decoded at 1/2, 1/4 or 1/8 size (the JPEG
    decoder's own scaling, much faster) as long as its short side stays at least ``min_side``;
    the returned size is still the full one, so coordinates refer to the original image.
    Raises :class:`FcnxError` as :func:`open_upright` does.
    """
    with _opened(path, None) as (image, source):
        size = None
        if min_side is not None and image.format == "JPEG":  # a JPEG's EXIF is read at open, before any decoding
            full = upright_size(image)
            if min(full) > min_side:
                factor = min_side / min(full)
                width, height = image.size
                try:
                    image.draft(image.mode, (math.ceil(width * factor), math.ceil(height * factor)))
                    size = full
                except Exception:  # draft is an optimisation only
                    pass
        upright = _decode(image, path)
    try:
        pixels = to_rgb(upright)
    except Exception as exc:
        raise FcnxError(f"cannot convert {upright.mode} image to RGB ({reason(exc)})", path) from None
    return RGBImage(pixels, size or (upright.height, upright.width), source)


def load_rgb(path: str | os.PathLike[str], min_side: int | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """:func:`read_rgb`'s pixels and upright full size ``(height, width)``."""
    image = read_rgb(path, min_side)
    return image.pixels, image.size
