"""Reading images from the wild and finding them: modes, orientation, broken files, datasets."""

from __future__ import annotations

import os
import zlib
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
from image_corpus import STORED
from PIL import Image

from fcnx.errors import FcnxError, UsageError
from fcnx.io.decoding import load_rgb, open_upright
from fcnx.io.discovery import discover

EXIF_ORIENTATION = 0x0112


def upright_pattern(height: int = 24, width: int = 40) -> np.ndarray:
    """An asymmetric RGB picture: red block top-left, blue block bottom-right, grey elsewhere."""
    a = np.full((height, width, 3), 128, np.uint8)
    a[:6, :10] = (255, 0, 0)
    a[-4:, -8:] = (0, 0, 255)
    return a


#: stored pixels for each EXIF orientation, such that turning them upright gives the pattern back


@pytest.mark.parametrize("orientation", sorted(STORED))
@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_every_exif_orientation_is_turned_upright(tmp_path, orientation, fmt):
    upright = upright_pattern()
    stored = Image.fromarray(np.ascontiguousarray(STORED[orientation](upright)))
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    path = tmp_path / f"o{orientation}.{fmt.lower()}"
    stored.save(path, format=fmt, exif=exif, **({"quality": 98, "subsampling": 0} if fmt == "JPEG" else {}))
    pixels, size = load_rgb(path)
    assert size == (24, 40) and pixels.shape == (24, 40, 3)
    difference = np.abs(pixels.astype(int) - upright.astype(int))
    if fmt == "PNG":
        assert difference.max() == 0
    else:  # lossy: the blocks are where they belong, edges ring a little
        assert difference.mean() < 4
        assert pixels[2, 3].tolist()[0] > 230 and pixels[-2, -3].tolist()[2] > 230


def test_modes_are_converted_to_rgb_correctly(tmp_path):
    rgb = upright_pattern()
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=98)
    pixels, _ = load_rgb(tmp_path / "cmyk.jpg")
    assert np.abs(pixels.astype(int) - rgb.astype(int)).mean() < 4
    assert pixels[2, 3].tolist()[0] > 230 and pixels[12, 20].tolist() == pytest.approx([128] * 3, abs=4)

    grey16 = np.arange(256, dtype=np.uint16).reshape(16, 16) * 257
    Image.fromarray(grey16).save(tmp_path / "grey16.png")
    pixels, _ = load_rgb(tmp_path / "grey16.png")
    assert pixels[:, :, 0].ravel().tolist() == list(range(256))  # scaled, not clipped at 255
    assert (pixels[:, :, 0] == pixels[:, :, 2]).all()

    palette = Image.new("P", (4, 2), 0)
    palette.putpalette([255, 0, 0, 0, 0, 0] + [0] * 762)
    palette.putpixel((3, 1), 1)
    palette.save(tmp_path / "palette.png", transparency=1)
    pixels, _ = load_rgb(tmp_path / "palette.png")
    assert pixels[0, 0].tolist() == [255, 0, 0] and pixels[1, 3].tolist() == [255, 255, 255]

    la = Image.fromarray(
        np.stack([np.full((2, 2), 100, np.uint8), np.array([[255, 0], [255, 255]], np.uint8)], 2), "LA"
    )
    la.save(tmp_path / "la.png")
    pixels, _ = load_rgb(tmp_path / "la.png")
    assert pixels[0, 0].tolist() == [100, 100, 100] and pixels[0, 1].tolist() == [255, 255, 255]

    rgba = np.zeros((1, 2, 4), np.uint8)
    rgba[0, 0] = (0, 0, 200, 255)
    rgba[0, 1] = (0, 0, 0, 128)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    pixels, _ = load_rgb(tmp_path / "rgba.png")
    assert pixels[0, 0].tolist() == [0, 0, 200] and pixels[0, 1].tolist() == [127, 127, 127]

    Image.fromarray(np.array([[0, 255]], np.uint8)).convert("1").save(tmp_path / "bw.png")
    assert load_rgb(tmp_path / "bw.png")[0].tolist() == [[[0, 0, 0], [255, 255, 255]]]


def test_animated_gif_gives_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    pixels, size = load_rgb(tmp_path / "anim.gif")
    assert size == (8, 8) and pixels[4, 4].tolist() == [255, 0, 0]


def test_tiny_and_elongated_images_load(tmp_path):
    Image.new("RGB", (1, 1), (9, 8, 7)).save(tmp_path / "one.png")
    assert load_rgb(tmp_path / "one.png")[0].tolist() == [[[9, 8, 7]]]
    Image.new("RGB", (20000, 10), (1, 2, 3)).save(tmp_path / "strip.png")
    pixels, size = load_rgb(tmp_path / "strip.png")
    assert size == (10, 20000) and pixels.shape == (10, 20000, 3)


def test_large_jpeg_is_decoded_smaller_but_reports_its_full_upright_size(tmp_path):
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6  # stored 2000 x 1000 (w x h), upright 1000 x 2000
    Image.new("RGB", (2000, 1000), (50, 100, 150)).save(tmp_path / "big.jpg", exif=exif)
    pixels, size = load_rgb(tmp_path / "big.jpg", min_side=300)
    assert size == (2000, 1000)
    assert 300 <= min(pixels.shape[:2]) < 1000 and pixels.shape[0] > pixels.shape[1]
    full, _ = load_rgb(tmp_path / "big.jpg")
    assert full.shape == (2000, 1000, 3)


def _bad_png_crc(path: Path) -> None:
    Image.new("RGB", (16, 16), (1, 2, 3)).save(path)
    data = bytearray(path.read_bytes())
    ihdr_crc = 8 + 8 + 13  # signature, IHDR length+type, IHDR data: its CRC follows
    data[ihdr_crc] ^= 0xFF
    path.write_bytes(bytes(data))


def _bad_png_data(path: Path) -> None:
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), np.uint8)).save(path)
    data = bytearray(path.read_bytes())
    start = data.index(b"IDAT") + 4
    data[start + 10 : start + 40] = bytes(30)  # garble the compressed pixels (the CRC no longer matches)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("empty.jpg", lambda p: p.write_bytes(b""), "empty file, not an image"),
        ("text.jpg", lambda p: p.write_text("hello, I am not a JPEG\n"), "not an image file Pillow can read"),
        (
            "truncated.jpg",
            lambda p: (
                Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), np.uint8)).save(p, quality=90),
                p.write_bytes(p.read_bytes()[:3000]),
            ),
            "cannot decode image",
        ),
        ("badcrc.png", _bad_png_crc, "not an image file Pillow can read"),
        ("baddata.png", _bad_png_data, "cannot decode image"),
        ("folder.jpg", lambda p: p.mkdir(), "is a folder, not an image"),
        ("loop.jpg", lambda p: os.symlink(p.name, p), "symbolic link loop"),
        ("missing.jpg", lambda p: None, "no such file"),
    ],
)
def test_broken_files_raise_one_line_errors_naming_the_file(tmp_path, name, make, message):
    path = tmp_path / name
    make(path)
    with pytest.raises(FcnxError) as info:
        load_rgb(path)
    text = str(info.value)
    assert text.startswith(f"{path}: ") and message in text and "\n" not in text


def test_unreadable_file_is_reported(tmp_path, monkeypatch):
    path = tmp_path / "secret.jpg"
    Image.new("RGB", (4, 4)).save(path)
    if os.geteuid() != 0:
        path.chmod(0)
    else:  # root reads everything: make the open fail as it would for another user

        def refuse(*args, **kwargs):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(Image, "open", refuse)
    with pytest.raises(FcnxError, match="permission denied"):
        load_rgb(path)


def test_decompression_bombs_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    Image.new("RGB", (40, 40)).save(tmp_path / "warn.png")  # 1600 pixels: over the limit (Pillow only warns)
    Image.new("RGB", (100, 100)).save(tmp_path / "bomb.png")  # over twice the limit (Pillow raises)
    for name in ("warn.png", "bomb.png"):
        with pytest.raises(FcnxError, match="decompression-bomb limit of 1000 pixels"):
            load_rgb(tmp_path / name)
    with pytest.raises(FcnxError, match="decompression-bomb"):
        open_upright(tmp_path / "bomb.png")


# --------------------------------------------------------------------------- discovery


def _touch_image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4)).save(path, format="PNG")


def test_folders_are_walked_recursively_in_order_with_mirrored_paths(tmp_path):
    root = tmp_path / "photos"
    for rel in ["b.jpg", "a.png", "sub/z.JPEG", "sub/deeper/y.webp", "odd name é.jpg", "dir.jpg/inner.png"]:
        _touch_image(root / rel)
    (root / "notes.txt").write_text("not an image")
    items = discover([root])
    assert [i.rel.as_posix() for i in items] == [
        "a.png",
        "b.jpg",
        "odd name é.jpg",
        "dir.jpg/inner.png",
        "sub/z.JPEG",
        "sub/deeper/y.webp",
    ]
    assert all(i.label is None and i.path == root / i.rel for i in items)
    # several inputs: relative to their common parent, each file once
    items = discover([root / "sub", root / "a.png", root / "a.png"])
    assert [i.rel.as_posix() for i in items] == ["sub/z.JPEG", "sub/deeper/y.webp", "a.png"]
    with pytest.raises(UsageError, match="no such file or folder"):
        discover([tmp_path / "nope"])


def _food(root: Path, train: list[str], test: list[str], classes: list[str]) -> None:
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "classes.txt").write_text("\n".join(classes) + "\n")
    (root / "meta" / "train.txt").write_text("\n".join(train) + "\n")
    (root / "meta" / "test.txt").write_text("\n".join(test) + "\n")
    for line in train + test:
        if ".." not in line and not line.startswith("/"):
            _touch_image(root / "images" / f"{line}.jpg")


def test_food101_root_gives_labels_from_the_meta_lists(tmp_path):
    root = tmp_path / "food"
    _food(root, ["pizza/1", "ramen/2"], ["pizza/3"], ["pizza", "ramen"])
    items = discover([root])
    assert [(i.rel.as_posix(), i.label) for i in items] == [
        ("images/pizza/1.jpg", "pizza"),
        ("images/ramen/2.jpg", "ramen"),
        ("images/pizza/3.jpg", "pizza"),
    ]
    assert [i.rel.as_posix() for i in discover([root], split="test")] == ["images/pizza/3.jpg"]
    # without the lists the labels come from the folders
    (root / "meta" / "train.txt").unlink()
    (root / "meta" / "test.txt").unlink()
    assert [(i.rel.as_posix(), i.label) for i in discover([root])] == [
        ("images/pizza/1.jpg", "pizza"),
        ("images/pizza/3.jpg", "pizza"),
        ("images/ramen/2.jpg", "ramen"),
    ]
    # next to another input, the dataset keeps its own folder name as a prefix
    _touch_image(tmp_path / "extra.png")
    assert PurePosixPath("food/images/pizza/1.jpg") in [i.rel for i in discover([root, tmp_path / "extra.png"])]


@pytest.mark.parametrize("line", ["../../etc/passwd", "/etc/passwd", "pizza/../../x", "pizza\\..\\x", "sushi/1"])
def test_meta_lines_leaving_images_or_naming_unknown_classes_are_refused(tmp_path, line):
    root = tmp_path / "food"
    _food(root, ["pizza/1", line], [], ["pizza"])
    with pytest.raises(UsageError, match=r"train\.txt:2"):
        discover([root])


def test_bad_png_is_detected_by_crc_not_silently_loaded(tmp_path):
    path = tmp_path / "x.png"
    _bad_png_crc(path)
    data = path.read_bytes()
    assert zlib.crc32(data[12:29]) != int.from_bytes(data[29:33], "big")
