"""Files built to kill or hang a loader: chunk bombs, every Pillow error, special files, lying headers, races, odd names."""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path

import numpy as np
import pytest
from image_corpus import chunk_bomb, lying_jpeg, square
from PIL import Image, ImageFile, PngImagePlugin

from fcnx.errors import FcnxError, one_line
from fcnx.io import decoding
from fcnx.io.decoding import load_rgb, open_upright
from fcnx.io.discovery import discover

pytestmark = pytest.mark.usefixtures("no_hang")


def one_line_error(path: Path, *words: str) -> str:
    """The error ``load_rgb(path)`` raises, checked to be one printable line naming the file."""
    with pytest.raises(FcnxError) as info:
        load_rgb(path)
    text = str(info.value)
    assert text.isprintable() and text.startswith(f"{one_line(path)}: "), text
    for word in words:
        assert word in text, text
    return text


# --------------------------------------------------------------------------- bombs and Pillow's errors


@pytest.mark.parametrize("after_pixels", [False, True], ids=["before-pixels", "after-pixels"])
@pytest.mark.parametrize("kind", [b"iCCP", b"zTXt", b"iTXt"], ids=lambda k: k.decode())
def test_zlib_bombs_in_png_chunks_are_one_line_each(tmp_path, kind, after_pixels):
    path = chunk_bomb(tmp_path / "bomb.png", kind, after_pixels)
    assert path.stat().st_size < 100_000
    one_line_error(path, "Decompressed data too large")
    with pytest.raises(FcnxError, match="Decompressed data too large"):
        open_upright(path)


ERRORS = [
    ValueError("bad value"),
    SyntaxError("not a PNG file"),
    struct.error("unpack requires a buffer of 4 bytes"),
    EOFError(),
    OSError("broken data stream"),
    IndexError("list index out of range"),
    KeyError("mode"),
    TypeError("bad type"),
    ZeroDivisionError("division by zero"),
    MemoryError(),
    Image.DecompressionBombError("too many pixels"),
]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("stage", ["open", "decode"])
def test_every_error_pillow_raises_is_one_line_for_that_image(tmp_path, monkeypatch, error, stage):
    path = square(tmp_path / "x.png")

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "_open" if stage == "open" else "load", fail)
    text = one_line_error(path)
    assert "\n" not in text


# --------------------------------------------------------------------------- special files


def test_a_fifo_named_like_an_image_is_never_opened(tmp_path):
    os.mkfifo(tmp_path / "x.jpg")
    os.symlink("x.jpg", tmp_path / "link.jpg")
    one_line_error(tmp_path / "x.jpg", "is a named pipe, not a regular file: not opened")
    one_line_error(tmp_path / "link.jpg", "is a named pipe")
    assert {i.path.name for i in discover([tmp_path])} == {"x.jpg", "link.jpg"}  # listed, then refused


def test_a_device_behind_a_link_is_not_opened(tmp_path):
    os.symlink("/dev/zero", tmp_path / "zero.png")
    one_line_error(tmp_path / "zero.png", "is a character device, not a regular file")


def test_a_fifo_swapped_in_after_the_check_cannot_hang_the_open(tmp_path, monkeypatch):
    path = square(tmp_path / "x.png")
    real_stat = os.stat

    def swap(target, *args, **kwargs):  # the file is replaced by a FIFO right after it was checked
        status = real_stat(target, *args, **kwargs)
        if Path(target) == path and stat.S_ISREG(status.st_mode):
            path.unlink()
            os.mkfifo(path)
        return status

    monkeypatch.setattr(decoding.os, "stat", swap)
    one_line_error(path, "is a named pipe")


# --------------------------------------------------------------------------- sizes: budget and lying headers


def test_a_small_jpeg_declaring_9000x9000_is_not_decoded(tmp_path):
    path = lying_jpeg(tmp_path / "liar.jpg", 9000, 9000)
    assert path.stat().st_size < 4096
    one_line_error(path, "9000x9000 is 81000000 pixels, over the budget of 50000000")


def test_a_jpeg_with_too_little_data_for_its_size_is_refused_under_the_budget(tmp_path):
    path = lying_jpeg(tmp_path / "liar.jpg", 6000, 5000)
    one_line_error(path, "declares 6000x5000 pixels but holds only", "too few for that size")


@pytest.mark.parametrize("options", [{}, {"optimize": True}, {"progressive": True, "optimize": True}])
@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_flat_jpegs_compress_well_and_still_load(tmp_path, mode, options):
    path = tmp_path / "flat.jpg"
    Image.new(mode, (3000, 2000), (200,) * len(mode)).save(
        path, **options
    )  # the best any Huffman-coded JPEG compresses
    pixels, size = load_rgb(path, min_side=100)
    assert size == (2000, 3000) and (pixels == 200).all()


def test_the_pixel_budget_is_well_below_pillows_limit_and_configurable(tmp_path, monkeypatch):
    assert decoding.DEFAULT_MAX_PIXELS <= Image.MAX_IMAGE_PIXELS // 1.5
    path = square(tmp_path / "x.png", size=(40, 50))
    monkeypatch.setenv("FCNX_MAX_PIXELS", "1999")
    one_line_error(path, "50x40 is 2000 pixels, over the budget of 1999 per image (set FCNX_MAX_PIXELS")
    monkeypatch.setenv("FCNX_MAX_PIXELS", "2000")
    assert load_rgb(path)[1] == (40, 50)
    for bad in ("lots", "0", "-5", "١٠٠٠"):
        monkeypatch.setenv("FCNX_MAX_PIXELS", bad)
        with pytest.raises(FcnxError, match="FCNX_MAX_PIXELS must be a whole number of pixels >= 1"):
            load_rgb(path)


# --------------------------------------------------------------------------- files that change while read


def _during_decode(monkeypatch, action):
    """Run ``action`` once inside Pillow's decoding (after the pixels were read)."""
    real_load = ImageFile.ImageFile.load
    pending = [action]

    def load(self):
        pixels = real_load(self)
        while pending:
            pending.pop()()
        return pixels

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)


def test_a_file_replaced_while_it_is_decoded_is_named(tmp_path, monkeypatch):
    path, other = square(tmp_path / "x.png"), square(tmp_path / "y.png", top=0)
    _during_decode(monkeypatch, lambda: os.replace(other, path))
    one_line_error(path, "replaced by another file while it was being read")


def test_a_file_modified_in_place_while_it_is_decoded_is_named(tmp_path, monkeypatch):
    path = square(tmp_path / "x.png")

    def append():
        with open(path, "ab") as f:
            f.write(b"more")

    _during_decode(monkeypatch, append)
    one_line_error(path, "modified while it was being read")


def test_a_file_deleted_while_it_is_decoded_is_named(tmp_path, monkeypatch):
    path = square(tmp_path / "x.png")
    _during_decode(monkeypatch, path.unlink)
    one_line_error(path, "deleted while it was being read")


def test_the_identity_of_the_file_read_comes_with_its_pixels_and_is_checked_on_reopening(tmp_path):
    path = square(tmp_path / "x.png")
    image = decoding.read_rgb(path)
    status = path.stat()
    assert image.source == decoding.Source(status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)
    assert open_upright(path, expect=image.source).size == (160, 120)
    square(tmp_path / "y.png", top=0).replace(path)
    with pytest.raises(FcnxError, match="replaced or modified since it was read: its box is from the earlier file"):
        open_upright(path, expect=image.source)
    path.unlink()
    with pytest.raises(FcnxError, match="deleted since it was read: no outputs written"):
        open_upright(path, expect=image.source)


# --------------------------------------------------------------------------- names


LATIN1 = "caf\xe9".encode("latin-1")


@pytest.mark.parametrize(
    "name, escaped",
    [
        (LATIN1 + b".png", "caf\\xe9.png"),
        (b"two\nlines.png", "two\\nlines.png"),
        (b"tab\tand\rcr\x1b[31m.png", "tab\\tand\\rcr\\x1b[31m.png"),
        ("line\u2028sep\x85.png".encode(), "line\\u2028sep\\x85.png"),
        ("naïve 名前.png".encode(), "naïve 名前.png"),
    ],
    ids=["latin-1", "newline", "controls", "separators", "printable"],
)
def test_odd_names_are_listed_decoded_and_named_on_one_printable_line(tmp_path, name, escaped):
    folder = os.fsencode(tmp_path)
    good, bad = os.path.join(folder, b"good-" + name), os.path.join(folder, b"bad-" + name)
    square(Path(os.fsdecode(good)))
    with open(bad, "wb") as f:
        f.write(b"not an image")
    found = sorted(os.fsencode(i.path) for i in discover([tmp_path]))
    assert found == sorted([bad, good])
    assert load_rgb(os.fsdecode(good))[1] == (120, 160)
    text = one_line_error(Path(os.fsdecode(bad)), "not an image file Pillow can read")
    assert text == f"{os.fsdecode(folder)}/bad-{escaped}: not an image file Pillow can read"
    text.encode("utf-8")  # printable on any UTF-8 stream


def test_a_name_of_255_bytes_is_listed_and_decoded(tmp_path):
    name = "é" * 125 + "x.png"  # 250 + 5 bytes: the longest name the file system takes
    assert len(name.encode()) == 255
    square(tmp_path / name)
    assert [i.path.name for i in discover([tmp_path])] == [name]
    assert load_rgb(tmp_path / name)[1] == (120, 160)


def test_one_line_leaves_printable_text_alone_and_escapes_the_rest():
    assert one_line(Path("/data/naïve/x.png")) == "/data/naïve/x.png"
    assert one_line(os.fsdecode(b"/d/\xff\xfe")) == "/d/\\xff\\xfe"
    assert one_line(b"a\nb") == "a\\nb"
    assert one_line("\x00\x7f\u2029") == "\\x00\\x7f\\u2029"
    assert FcnxError("bad\nthing", Path("x\ny.png")).args[0] == "x\\ny.png: bad\\nthing"


def test_pixels_of_an_odd_name_are_the_files(tmp_path):
    path = Path(os.fsdecode(os.path.join(os.fsencode(tmp_path), LATIN1 + b"\n.png")))
    square(path)
    pixels, _ = load_rgb(path)
    assert pixels[70, 100].tolist() == [230, 20, 20] and pixels[0, 0].tolist() == [128, 128, 128]
    assert np.asarray(open_upright(path)).shape == (120, 160, 3)
