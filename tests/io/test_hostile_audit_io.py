"""Hostile files read by fcnx.io that the other suites leave out: float grey with NaN, EXIF orientations that
are no orientation, class lists with a BOM or control characters, journal lines nested too deeply."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from fcnx.errors import FcnxError, UsageError
from fcnx.io.decoding import load_rgb, open_upright, read_rgb
from fcnx.io.files import read_class_list
from fcnx.io.journal import read_journal

ORIENTATION = 0x0112


def test_float_grey_with_nan_is_black_without_a_numpy_warning(tmp_path):
    grey = np.full((4, 6), 300.0, np.float32)
    grey[1, 2] = np.nan
    grey[2, 3] = -np.inf
    Image.fromarray(grey).save(tmp_path / "f.tif")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pixels, size = load_rgb(tmp_path / "f.tif")
    assert size == (4, 6)
    assert pixels[0, 0].tolist() == [255, 255, 255]
    assert pixels[1, 2].tolist() == [0, 0, 0] and pixels[2, 3].tolist() == [0, 0, 0]


@pytest.mark.parametrize("orientation", [0, 9, 65535, (6, 6)], ids=["0", "9", "65535", "two-values"])
@pytest.mark.parametrize("min_side", [None, 4])
def test_an_exif_orientation_that_is_no_orientation_is_read_quietly(tmp_path, orientation, min_side):
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns on writing two values too
        Image.new("RGB", (40, 20), (200, 10, 10)).save(tmp_path / "o.jpg", exif=exif, quality=95)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image = read_rgb(tmp_path / "o.jpg", min_side)
    # a value that is no orientation leaves the image as stored; Pillow takes the first of several values
    assert image.size == ((40, 20) if orientation == (6, 6) else (20, 40))
    height, width = image.pixels.shape[:2]  # decoded smaller with min_side
    assert (height > width) == (image.size[0] > image.size[1])


def test_a_class_list_with_a_bom_crlf_blank_lines_and_spaces_is_read(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_bytes("\ufeffapple pie\r\n\r\n  baklava \r\nbeignets".encode())
    assert read_class_list(path) == ["apple pie", "baklava", "beignets"]


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "class list is empty"),
        (b"\xef\xbb\xbf\n \n", "class list is empty"),
        (b"a\nb\na\n", "class list names 'a' twice: each class is one category id"),
        (b"a\nb\x1bc\n", "class list names 'b\\x1bc', which holds control characters"),
    ],
    ids=["empty", "bom-only", "twice", "escape"],
)
def test_a_class_list_without_names_with_a_name_twice_or_a_control_character_is_refused(tmp_path, data, problem):
    path = tmp_path / "classes.txt"
    path.write_bytes(data)
    with pytest.raises(UsageError) as error:
        read_class_list(path)
    assert str(error.value) == f"{path}: {problem}"


def test_a_long_class_list_is_checked_for_names_twice_in_linear_time(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("".join(f"class {k}\n" for k in range(200_000)))
    assert len(read_class_list(path)) == 200_000  # was quadratic: minutes


def test_a_journal_line_nested_too_deeply_is_a_line_that_is_no_record(tmp_path):
    path = tmp_path / "boxes.jsonl"
    path.write_bytes(b'{"a": 1}\n' + b"[" * 200_000 + b"\n" + b'{"b": 2}\n')
    journal = read_journal(path)
    assert journal.lines == [(1, {"a": 1}), (2, None), (3, {"b": 2})] and not journal.cut


def test_a_cut_last_journal_line_nested_too_deeply_is_dropped_as_cut(tmp_path):
    path = tmp_path / "boxes.jsonl"
    path.write_bytes(b'{"a": 1}\n' + b"[" * 200_000)
    journal = read_journal(path)
    assert journal.lines == [(1, {"a": 1})] and journal.cut


def test_a_path_with_a_nul_byte_from_a_list_is_one_line_naming_it():
    with pytest.raises(FcnxError) as error:
        open_upright("photos/a\0b.jpg")
    assert str(error.value) == "photos/a\\x00b.jpg: cannot open (embedded null byte)"
