"""Test pictures: a red square on grey, and the bad-input corpus every image loader of fcnx must survive.

The corpus (:func:`write_corpus`) holds files that look odd but load (:data:`LOADABLE`, :data:`NESTED`)
and files no loader can read (:data:`UNREADABLE`, with the words their one-line error must contain).
``bomb.png`` is over the decompression-bomb limit only with ``Image.MAX_IMAGE_PIXELS`` set to
:data:`BOMB_LIMIT` (monkeypatch it; in-process runs only). ``strip.png`` loads but is too elongated
for ``fcnx crop``'s pyramid. The hostile files (:func:`chunk_bomb`, :func:`lying_jpeg`, a FIFO) are
in the corpus too: zlib bombs in PNG text and colour-profile chunks, a JPEG header declaring far
more pixels than its data holds, and a named pipe named like an image.
"""

from __future__ import annotations

import functools
import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

BOMB_LIMIT = 200_000
#: flat files that load (converted to 8-bit RGB)
LOADABLE = [
    "good.png",
    "naïve name.png",
    "one.png",
    "grey16.png",
    "cmyk.jpg",
    "rgba.png",
    "palette.png",
    "anim.gif",
    "strip.png",
]
#: files in sub-folders that load: a folder named like an image, and two files of the same name
NESTED = ["dir.jpg/inside.png", "a/same.png", "b/same.png"]
#: files no loader can read -> what their error says
UNREADABLE = {
    "empty.jpg": "empty file, not an image",
    "text.jpg": "not an image file Pillow can read",
    "truncated.jpg": "cannot decode image",
    "loop.jpg": "symbolic link loop",
    "bomb.png": f"decompression-bomb limit of {BOMB_LIMIT} pixels",
    "iccp-bomb.png": "Decompressed data too large",
    "ztxt-bomb.png": "Decompressed data too large",
    "liar.jpg": "too few for that size",
    "fifo.jpg": "is a named pipe, not a regular file: not opened",
}
#: what a zlib bomb inflates to (Pillow stops at 1 MB of a text or profile chunk)
BOMB_INFLATED = 64 << 20


@functools.cache
def _bomb() -> bytes:
    return zlib.compress(bytes(BOMB_INFLATED), 9)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def chunk_bomb(path: Path, kind: bytes = b"iCCP", after_pixels: bool = False) -> Path:
    """A valid small PNG with a zlib bomb (:data:`BOMB_INFLATED` bytes) in an ``iCCP``, ``zTXt`` or ``iTXt`` chunk.

    The chunk goes before the pixel data (read when the file is opened) or after it (read when decoded).
    """
    prefix = {b"iCCP": b"icc\0\0", b"zTXt": b"comment\0\0", b"iTXt": b"comment\0\1\0\0\0"}[kind]
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (230, 20, 20)).save(buffer, "PNG")
    png = buffer.getvalue()
    cut = len(png) - 12 if after_pixels else 8 + 25  # before IEND, or right after the signature and IHDR
    path.write_bytes(png[:cut] + _chunk(kind, prefix + _bomb()) + png[cut:])
    return path


def lying_jpeg(path: Path, width: int, height: int) -> Path:
    """A small complete JPEG whose frame header declares ``width x height`` (libjpeg fills the rest with grey)."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (100, 150, 200)).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    frame = data.find(b"\xff\xc0")
    data[frame + 5 : frame + 9] = struct.pack(">HH", height, width)
    path.write_bytes(bytes(data))
    return path


def square(path: Path, size=(120, 160), top=60, left=90, side=40, fmt=None) -> Path:
    """A grey picture with a red square (the colour nets of tests/tiny_backbones.py find it exactly)."""
    image = np.full((*size, 3), 128, np.uint8)
    image[top : top + side, left : left + side] = (230, 20, 20)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, format=fmt)
    return path


def write_corpus(folder: Path, nested: bool = True) -> Path:
    """Write the corpus into ``folder`` (:data:`LOADABLE`, :data:`UNREADABLE`, and :data:`NESTED` if ``nested``)."""
    folder.mkdir(parents=True, exist_ok=True)
    red = np.asarray(Image.open(square(folder / "good.png")))
    square(folder / "naïve name.png")
    if nested:
        square(folder / "dir.jpg" / "inside.png")
        square(folder / "a" / "same.png")
        square(folder / "b" / "same.png", top=0)
    Image.new("RGB", (1, 1), (230, 20, 20)).save(folder / "one.png")
    Image.fromarray(np.full((120, 160), 30000, np.uint16)).save(folder / "grey16.png")
    Image.fromarray(red).convert("CMYK").save(folder / "cmyk.jpg")
    Image.fromarray(red).convert("RGBA").save(folder / "rgba.png")
    Image.fromarray(red).convert("P").save(folder / "palette.png", transparency=0)
    frames = [Image.fromarray(red).convert("P"), Image.new("P", (160, 120))]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:])
    Image.new("RGB", (16000, 10)).save(folder / "strip.png")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("not a jpeg")
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), np.uint8))
    noise.save(folder / "truncated.jpg")
    (folder / "truncated.jpg").write_bytes((folder / "truncated.jpg").read_bytes()[:2000])
    os.symlink("loop.jpg", folder / "loop.jpg")
    Image.new("RGB", (500, 500)).save(folder / "bomb.png")
    chunk_bomb(folder / "iccp-bomb.png")
    chunk_bomb(folder / "ztxt-bomb.png", b"zTXt", after_pixels=True)
    lying_jpeg(folder / "liar.jpg", 400, 400)  # 9 bytes of pixel data: refused for its data alone
    os.mkfifo(folder / "fifo.jpg")
    return folder


#: EXIF orientation -> how the upright pixels are stored in the file
STORED = {
    1: lambda u: u,
    2: lambda u: u[:, ::-1],
    3: lambda u: u[::-1, ::-1],
    4: lambda u: u[::-1, :],
    5: lambda u: u.transpose(1, 0, 2),
    6: lambda u: np.rot90(u, 1),
    7: lambda u: np.rot90(u, 2).transpose(1, 0, 2),
    8: lambda u: np.rot90(u, -1),
}
