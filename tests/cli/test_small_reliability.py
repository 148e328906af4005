"""The small ones of issue 31, item 5: suggestions for a word that names several classes, one error for
a bad FCNX_MAX_PIXELS, ``train --crops`` skipping an image whose box does not fit it, and numbers
written as text in a boxes file refused."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from image_corpus import square
from PIL import Image
from tiny_backbones import color_checkpoint
from tiny_train_backbone import NAME, make_food101

from fcnx.cli import cli
from fcnx.io.record import record_problem

#: ImageNet names two classes "crane" (a bird and a machine) and tells them apart by their synsets
CLASSES = ["crane (n02012849)", "crate", "crane (n03126707)", "canoe"]


def invoke(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def nets(tmp_path, tiny_registry):
    path = color_checkpoint(tmp_path / "w.safetensors", "tiny0", classes=CLASSES)
    return ["--nets", "tiny0", "--weights", f"tiny0={path}"]


def test_a_word_that_names_two_classes_suggests_both_first(tmp_path, nets):
    square(tmp_path / "photos" / "a.png")
    result = invoke("crop", *nets, "--category", "Crane", tmp_path / "photos", "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1].startswith(
        "Error: unknown category 'Crane' (did you mean: crane (n02012849), crane (n03126707), crate?); "
    )
    named = invoke(
        "crop", *nets, "--category", "crane (n03126707)", "--workers", "0", tmp_path / "photos", "-o", tmp_path / "out"
    )
    assert named.exit_code == 0, named.output  # each is named by its full name, as before


@pytest.mark.parametrize("value", ["abc", "0", "-5", "1e6", "٣"])
def test_a_bad_max_pixels_is_one_error_before_any_image(tmp_path, nets, monkeypatch, value):
    monkeypatch.setenv("FCNX_MAX_PIXELS", value)
    for k in range(3):
        square(tmp_path / "photos" / "red" / f"{k}.png")
    line = f"Error: FCNX_MAX_PIXELS must be a whole number of pixels >= 1, got {value!r}"
    cropped = invoke(
        "crop", *nets, "--category", "crate", "--workers", "0", tmp_path / "photos", "-o", tmp_path / "out"
    )
    assert cropped.exit_code == 2 and cropped.stderr.splitlines() == [line]
    assert not (tmp_path / "out").exists()
    evaluated = invoke("evaluate", *nets, "--data", tmp_path / "photos", "--split", "all")
    assert evaluated.exit_code == 2 and evaluated.stderr.splitlines() == [line]


def test_train_crops_skips_an_image_whose_box_lies_outside_it_naming_it(tmp_path, tiny_train):
    root = make_food101(tmp_path / "food", train=4, test=1)
    images = sorted((root / "images").rglob("*.jpg"))
    boxes = tmp_path / "boxes.jsonl"
    boxes.write_text("".join(json.dumps({"path": str(p), "x": 5, "y": 5, "w": 40, "h": 40}) + "\n" for p in images))
    Image.new("RGB", (3, 3)).save(images[1])  # another version of the image: the box lies outside it
    images[0].write_bytes(b"not an image")
    out = tmp_path / "run"
    args = ["train", "--net", NAME, "--data", root, "--crops", boxes, "-o", out, "--size", "32"]
    result = invoke(*args, "--weights", "none", "--epochs", "1", "--workers", "0", "-q")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert [line for line in result.stderr.splitlines() if line.startswith("error: ")] == [
        f"error: {images[0]}: not an image file Pillow can read",
        f"error: {images[1]}: its box (x=5, y=5, w=40, h=40) lies outside the 3x3 image: a box of another version of it?",
    ]
    assert len((out / "skipped.txt").read_text().splitlines()) == 2


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("x", "12.5", "field 'x' is not a number ('12.5')"),
        ("w", True, "field 'w' is not a number (True)"),
        ("width", "400", "field 'width' is not a side in pixels ('400')"),
    ],
)
def test_numbers_written_as_text_in_a_boxes_file_are_refused(tmp_path, nets, field, value, why):
    square(tmp_path / "data" / "crate" / "a.png")
    record = {"path": str(tmp_path / "data" / "crate" / "a.png"), "x": 1, "y": 2, "w": 30, "h": 30, field: value}
    boxes = tmp_path / "boxes.jsonl"
    boxes.write_text(json.dumps(record) + "\n")
    result = invoke("evaluate", *nets, "--data", tmp_path / "data", "--split", "all", "--crops", boxes)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"Error: {boxes}: line 1: not a box record (ValueError: {why})"]


def test_export_refuses_numbers_written_as_text(tmp_path):
    Image.new("RGB", (50, 40)).save(tmp_path / "a.png")
    record = {"path": str(tmp_path / "a.png"), "file": "a.png", "category": "c", "x": "1", "y": 2, "w": 3, "h": 4}
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "boxes.jsonl").write_text(json.dumps(record) + "\n")
    result = invoke("export", tmp_path / "out", "--format", "coco", "-o", tmp_path / "coco")
    assert result.exit_code == 2 and result.stderr.splitlines() == [
        f"Error: {tmp_path / 'out' / 'boxes.jsonl'}: line 1: not a box record (ValueError: field 'x' is not a number ('1'))"
    ]


def test_the_crop_journal_refuses_numbers_written_as_text():
    from fcnx.io.record import FIELDS

    record = {key: 1 for key in FIELDS} | {"path": "a", "file": "a", "label": None, "category": "c", "found": True}
    record |= {"cell": [0, 0], "scaled_size": [1, 1], "net_scores": {"n": 0.5}, "net_votes": {"n": True}}
    record |= {"crop": None, "heatmap": None, "stopped_early": False}
    assert record_problem(record) is None
    assert record_problem(record | {"confidence": "0.9"}) == "field 'confidence' has the wrong type or value (str)"
    assert (
        record_problem(record | {"net_scores": {"n": "0.5"}})
        == "field 'net_scores' is not a map of net names to numbers"
    )
    assert record_problem(record | {"cell": ["0", 0]}) == "field 'cell' is not two integers"
