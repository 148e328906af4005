"""Hostile inputs the other hostile suites leave out: empty path arguments, a category index of thousands of
digits, ensemble files of the wrong types, JSON nested deeper than Python parses, a tampered settings file,
class lists with a BOM, a net named twice and weights of integers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hostile_helpers import NETS, dataset, invoke, last_line
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from tiny_backbones import color_checkpoint

#: a JSON array nested far deeper than Python's parser recurses
DEEP = b"[" * 200_000


pytestmark = pytest.mark.usefixtures("no_hang")


@pytest.fixture
def weights(tmp_path, tiny_registry) -> dict[str, Path]:
    return {n: color_checkpoint(tmp_path / f"{n}.safetensors", n, input_size=s) for n, s in NETS.items()}


@pytest.fixture
def nets(weights) -> list[str]:
    return ["--nets", ",".join(NETS), *(a for n, p in weights.items() for a in ("--weights", f"{n}={p}"))]


def crop(nets, *args) -> object:
    return invoke("crop", *nets, "--kernel", "native", "--workers", "0", "--max-scale", "1.5", *args)


# --------------------------------------------------------------------------- empty paths


EMPTY = "an empty name is no file or folder (an unset shell variable?)."


def test_an_empty_input_is_refused_not_taken_as_the_current_folder(tmp_path, nets, monkeypatch):
    here = dataset(tmp_path / "here")
    monkeypatch.chdir(here)
    result = crop(nets, "", "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert last_line(result) == f"Error: Invalid value for 'INPUTS...': {EMPTY}"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["crop", "evaluate", "suspects", "export"])
def test_an_empty_outdir_is_refused_and_nothing_is_written_in_the_current_folder(tmp_path, nets, monkeypatch, command):
    data = dataset(tmp_path / "data")
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    if command == "crop":
        result = crop(nets, data, "-o", "")
    elif command == "export":
        assert crop(nets, data, "-o", tmp_path / "crops").exit_code == 0
        result = invoke("export", tmp_path / "crops", "--format", "coco", "-o", "")
    else:
        result = invoke(command, *nets, "--kernel", "native", "--data", data, "--split", "all", "-o", "")
    assert result.exit_code == 2
    assert last_line(result) == f"Error: Invalid value for '-o' / '--output': {EMPTY}"
    assert list(here.iterdir()) == []


def test_a_dash_input_is_no_such_file(tmp_path, nets):
    result = crop(nets, "-", "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert last_line(result) == "Error: -: no such file or folder"


# --------------------------------------------------------------------------- options


def test_a_category_index_of_more_digits_than_python_converts_is_one_line(tmp_path, nets):
    result = crop(nets, dataset(tmp_path / "photos"), "-o", tmp_path / "out", "--category", "9" * 5000)
    assert result.exit_code == 2
    assert last_line(result) == (
        "Error: category index 999999999999... (5000 digits) is out of range: the nets have 4 classes (0-3)"
    )


def test_a_net_named_twice_is_refused_before_outdir_is_made(tmp_path, weights):
    result = crop(["--nets", "tiny0,tiny_s16,tiny0"], dataset(tmp_path / "photos"), "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert last_line(result) == "Error: --nets names tiny0 twice: each net is one member of the ensemble"
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- --ensemble FILE


def _member(net="tiny0", checkpoint="tiny0.safetensors") -> dict:
    return {"net": net, "checkpoint": checkpoint, "val_top1": None, "finished": True}


def _manifest(**changes) -> dict:
    return {"members": [_member()], "kernel": 128, "config": {}, "complete": True, **changes}


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (json.dumps([_manifest()]), "TypeError: expected a JSON object, got list"),
        (
            json.dumps(_manifest(members=[_member(checkpoint=None)])),
            "ValueError: a member's checkpoint None is not a name",
        ),
        (
            json.dumps(_manifest(members=[_member(checkpoint="tiny0\0.safetensors")])),
            "ValueError: a member's checkpoint 'tiny0\\x00.safetensors' is not a name",
        ),
        (json.dumps(_manifest(members=[_member(net=5)])), "ValueError: a member's net 5 is not a name"),
        (json.dumps(_manifest(members=[_member(), _member()])), "ValueError: the net 'tiny0' is a member twice"),
        (json.dumps(_manifest(complete="no")), "ValueError: complete 'no' is neither true nor false"),
        (
            DEEP.decode(),
            "RecursionError: maximum recursion depth exceeded while decoding a JSON array from a unicode string",
        ),
    ],
    ids=["list", "null-checkpoint", "nul-in-checkpoint", "number-net", "member-twice", "complete-string", "deep"],
)
def test_an_ensemble_file_of_wrong_types_is_one_line_naming_it(tmp_path, weights, content, why):
    manifest = tmp_path / "ensemble.json"
    manifest.write_text(content)
    result = invoke("crop", "--ensemble", manifest, dataset(tmp_path / "photos"), "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert last_line(result) == f"Error: {manifest}: not an ensemble file of fcnx train --nets ({why})"


def test_an_ensemble_file_of_no_members_says_so(tmp_path, weights):
    manifest = tmp_path / "ensemble.json"
    manifest.write_text(json.dumps(_manifest(members=[])))
    result = invoke("crop", "--ensemble", manifest, dataset(tmp_path / "photos"), "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert last_line(result) == f"Error: {manifest}: lists no nets: not an ensemble trained by fcnx train --nets"


# --------------------------------------------------------------------------- JSON nested too deeply


def test_evaluate_refuses_a_boxes_line_nested_too_deeply_naming_the_line(tmp_path, nets):
    data, out = dataset(tmp_path / "data"), tmp_path / "crops"
    assert crop(nets, data, "-o", out).exit_code == 0
    boxes = out / "boxes.jsonl"
    lines = boxes.read_bytes().splitlines(keepends=True)
    boxes.write_bytes(b"".join(lines[:2]) + DEEP + b"\n" + b"".join(lines[2:]))
    result = invoke("evaluate", *nets, "--kernel", "native", "--split", "all", "--data", data, "--crops", boxes)
    assert result.exit_code == 2
    assert last_line(result) == f"Error: {boxes}: line 3: not a box record (ValueError: not a JSON object)"


def test_a_journal_line_nested_too_deeply_is_set_aside_and_the_crop_resumes(tmp_path, nets):
    data, out = dataset(tmp_path / "data"), tmp_path / "crops"
    assert crop(nets, data, "-o", out).exit_code == 0
    boxes = out / "boxes.jsonl"
    whole = boxes.read_bytes()
    boxes.write_bytes(whole + DEEP + b"\n")
    result = crop(nets, data, "-o", out)
    assert result.exit_code == 0
    assert f"warning: {boxes}:5: not a crop record (not a JSON object); set aside in boxes.rejected.jsonl" in (
        result.stderr
    )
    assert (out / "boxes.rejected.jsonl").read_bytes().endswith(DEEP + b"\n")
    assert boxes.read_bytes() == whole


@pytest.mark.parametrize(
    "content", ['{"settings": 5}', '{"settings": ["nets"]}', DEEP.decode()], ids=["number", "list", "deep"]
)
def test_a_tampered_settings_file_is_one_line_and_outdir_is_kept(tmp_path, nets, content):
    data, out = dataset(tmp_path / "data"), tmp_path / "crops"
    assert crop(nets, data, "-o", out).exit_code == 0
    (out / ".fcnx-crop.json").write_text(content)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".fcnx-lock"}
    result = crop(nets, data, "-o", out)
    assert result.exit_code == 2
    assert last_line(result) == (
        f"Error: unreadable settings file {out / '.fcnx-crop.json'}; remove it or choose another OUTDIR"
    )
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".fcnx-lock"} == before


# --------------------------------------------------------------------------- class lists and weights


def test_export_reads_a_class_list_with_a_bom_crlf_and_blank_lines(tmp_path, nets):
    out, classes = tmp_path / "crops", tmp_path / "classes.txt"
    assert crop(nets, dataset(tmp_path / "photos"), "-o", out).exit_code == 0
    classes.write_bytes("\ufeffred\r\n\r\ngreen\r\nblue\r\n  none  \r\n\r\n".encode())
    result = invoke("export", out, "--format", "coco", "--classes", classes, "-o", tmp_path / "coco")
    assert result.exit_code == 0, result.stderr
    labels = json.loads((tmp_path / "coco" / "labels.json").read_text())
    assert [c["name"] for c in labels["categories"]] == ["red", "green", "blue", "none"]


def test_export_refuses_a_class_name_with_a_control_character(tmp_path, nets):
    out, classes = tmp_path / "crops", tmp_path / "classes.txt"
    assert crop(nets, dataset(tmp_path / "photos"), "-o", out).exit_code == 0
    classes.write_text("red\ngr\teen\nblue\nnone\n")
    result = invoke("export", out, "--format", "coco", "--classes", classes, "-o", tmp_path / "coco")
    assert result.exit_code == 2
    assert last_line(result) == f"Error: {classes}: class list names 'gr\\teen', which holds control characters"
    assert not (tmp_path / "coco").exists()


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.complex64])
def test_weights_that_are_not_floating_point_are_refused_naming_the_tensor(tmp_path, weights, dtype):
    source = weights["tiny0"]
    with safe_open(str(source), framework="pt") as f:
        metadata = f.metadata()
    bad = tmp_path / "bad.safetensors"
    save_file({k: v.to(dtype) for k, v in load_file(str(source)).items()}, str(bad), metadata=metadata)
    result = crop(["--nets", "tiny0", "--weights", f"tiny0={bad}"], dataset(tmp_path / "photos"), "-o", tmp_path / "o")
    assert result.exit_code == 1
    name = str(dtype).removeprefix("torch.")
    assert last_line(result) == (
        f"Error: {bad}: tensor 'features.0.weight' holds {name} values, the architecture expects floating point"
    )


def test_weights_in_half_precision_still_load(tmp_path, weights):
    source = weights["tiny0"]
    with safe_open(str(source), framework="pt") as f:
        metadata = f.metadata()
    half = tmp_path / "half.safetensors"
    save_file({k: v.half() for k, v in load_file(str(source)).items()}, str(half), metadata=metadata)
    result = crop(["--nets", "tiny0", "--weights", f"tiny0={half}"], dataset(tmp_path / "photos"), "-o", tmp_path / "o")
    assert result.exit_code == 0, result.stderr


# --------------------------------------------------------------------------- boxes of another image


def test_evaluate_skips_an_image_whose_box_was_found_in_another_size_of_it(tmp_path, nets):
    data, out = dataset(tmp_path / "data"), tmp_path / "crops"
    assert crop(nets, data, "-o", out).exit_code == 0
    red = data / "red" / "0.png"
    Image.open(red).resize((100, 85)).save(red)  # the box still meets it: it would be cut silently
    result = invoke(
        "evaluate", *nets, "--kernel", "native", "--split", "all", "--data", data, "--crops", out / "boxes.jsonl"
    )
    assert result.exit_code == 1
    assert [line for line in result.stderr.splitlines() if line.startswith("error: ")] == [
        f"error: {red}: its box was found in a 200x170 image, this one is 100x85: a box of another version of it?"
    ]
    assert "evaluate: 1 image(s) skipped" in result.stderr


def test_evaluate_takes_boxes_of_records_without_an_image_size(tmp_path, nets):
    data, out = dataset(tmp_path / "data"), tmp_path / "crops"
    assert crop(nets, data, "-o", out).exit_code == 0
    records = [json.loads(line) for line in (out / "boxes.jsonl").read_text().splitlines()]
    boxes = tmp_path / "boxes.jsonl"
    keep = ("path", "file", "category", "x", "y", "w", "h")
    boxes.write_text("".join(json.dumps({k: r[k] for k in keep}) + "\n" for r in records))
    result = invoke("evaluate", *nets, "--kernel", "native", "--split", "all", "--data", data, "--crops", boxes)
    assert result.exit_code == 0, result.stderr


def test_bench_data_refuses_a_size_no_net_is_trained_at_before_writing(tmp_path):
    out = tmp_path / "bench"
    result = invoke("bench", "data", "-o", out, "--size", "5000", "--train-per-class", "0", "--test-per-class", "0")
    assert result.exit_code == 2
    assert last_line(result) == "Error: size must be in [16, 4096] (no net is trained larger), got 5000"
    assert not out.exists()


# --------------------------------------------------------------------------- export of tampered records


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"category": ["red"]}, "line 5: not a box record (ValueError: its category is no name)"),
        ({"category": {"red": 1}}, "line 5: not a box record (ValueError: its category is no name)"),
    ],
    ids=["list", "object"],
)
def test_export_refuses_a_record_whose_category_is_no_name_in_one_line(tmp_path, nets, change, problem):
    out = tmp_path / "crops"
    assert crop(nets, dataset(tmp_path / "photos"), "-o", out).exit_code == 0
    boxes = out / "boxes.jsonl"
    first = json.loads(boxes.read_text().splitlines()[0])
    with boxes.open("a") as f:
        f.write(json.dumps({**first, "path": str(tmp_path / "photos" / "other.png"), **change}) + "\n")
    result = invoke("export", out, "--format", "coco", "-o", tmp_path / "coco")
    assert result.exit_code == 2
    assert last_line(result) == f"Error: {boxes}: {problem}"
    assert not (tmp_path / "coco").exists()


@pytest.mark.parametrize("fmt", ["coco", "voc", "yolo", "fiftyone"])
def test_export_refuses_an_image_name_with_a_nul_byte_in_one_line(tmp_path, nets, fmt):
    out = tmp_path / "crops"
    assert crop(nets, dataset(tmp_path / "photos"), "-o", out).exit_code == 0
    boxes = out / "boxes.jsonl"
    records = [json.loads(line) for line in boxes.read_text().splitlines()]
    records[0]["file"] = "red/0\0.png"
    boxes.write_text("".join(json.dumps(r) + "\n" for r in records))
    result = invoke("export", out, "--format", fmt, "-o", tmp_path / "exported")
    assert result.exit_code == 2
    assert last_line(result) == (
        f"Error: {records[0]['path']}: image name red/0\\x00.png holds a NUL byte, which no file name can"
    )
    assert not (tmp_path / "exported").exists()


# --------------------------------------------------------------------------- train --resume of a tampered state


@pytest.mark.parametrize(
    ("resume", "why"),
    [
        (5, "TypeError: 'int' object is not subscriptable"),
        ({"config": {"net": "tiny0", "data": "/x"}}, "KeyError: 'progress'"),
        ({"config": [1], "progress": {}}, "AttributeError: 'list' object has no attribute 'items'"),
        (
            {"config": {"net": "tiny0", "data": "/x"}, "progress": {"bogus": 1}},
            "TypeError: Progress.__init__() got an unexpected keyword argument 'bogus'",
        ),
    ],
    ids=["number", "no-progress", "config-list", "progress-field"],
)
def test_train_resume_of_a_tampered_state_is_one_line_naming_it(tmp_path, resume, why):
    from fcnx.backbones import checkpoint

    state = tmp_path / "run" / "resume.safetensors"
    meta = checkpoint.CheckpointMeta(arch="tiny0", classes=["a", "b"], input_size=56, extra={"resume": resume})
    checkpoint.save(state, {"a": torch.zeros(1)}, meta)
    result = invoke("train", "--resume", "-o", tmp_path / "run")
    assert result.exit_code == 2
    assert last_line(result) == f"Error: {state}: not a training state written by fcnx train ({why})"
