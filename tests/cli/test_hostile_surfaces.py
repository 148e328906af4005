"""Hostile values for --kernel, and FIFOs or folders where a command reads a journal, boxes or an ensemble file."""

from __future__ import annotations

import errno
import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from tiny_backbones import color_checkpoint

from fcnx.cli import cli
from fcnx.io import files

NETS = {"tiny0": 128, "tiny_s16": 160}  # a mixed ensemble under --kernel native
COLORS = {"red": (230, 20, 20), "green": (20, 230, 20), "blue": (20, 20, 230), "none": (128, 128, 128)}


@pytest.fixture(autouse=True)
def no_hang():
    """Fail a test that blocks (reading a FIFO waits for a writer for ever) instead of hanging the suite."""

    def hung(*_):
        raise TimeoutError("the command blocked")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(30)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def nets(tmp_path, tiny_registry) -> list[str]:
    weights = {n: color_checkpoint(tmp_path / f"{n}.safetensors", n, input_size=s) for n, s in NETS.items()}
    return ["--nets", ",".join(NETS), *(a for n, p in weights.items() for a in ("--weights", f"{n}={p}"))]


def dataset(root: Path) -> Path:
    """Class folders, one image each: a coloured square on grey."""
    for name, color in COLORS.items():
        pixels = np.full((170, 200, 3), 128, np.uint8)
        pixels[20:150, 30:160] = color
        (root / name).mkdir(parents=True)
        Image.fromarray(pixels).save(root / name / "0.png")
    return root


def invoke(*args) -> object:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def crop(nets, *args) -> object:
    return invoke("crop", *nets, "--workers", "0", "--max-scale", "1.5", *args)


def last_line(result) -> str:
    return result.stderr.splitlines()[-1]


@pytest.mark.parametrize("kernel", ["10000000000000", "4097"])
def test_a_kernel_over_the_largest_input_size_is_one_line_before_any_allocation(tmp_path, nets, kernel):
    dataset(tmp_path / "photos")
    result = crop(nets, "--kernel", kernel, tmp_path / "photos", "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert last_line(result) == f"Error: kernel {kernel} is too large for tiny0: at most 4096 pixels a side"


def test_a_small_pixel_budget_does_not_refuse_the_kernel(tmp_path, nets, monkeypatch):
    dataset(tmp_path / "photos")
    monkeypatch.setenv("FCNX_MAX_PIXELS", str(200 * 170))  # the images' own size: they are upscaled to the kernel
    result = crop(nets, "--kernel", "256", "--category", "red", tmp_path / "photos", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output


def test_a_kernel_of_more_digits_than_python_converts_is_one_line(nets):
    result = invoke("crop", *nets, "--kernel", "9" * 5000, "x.png", "-o", "out")
    assert result.exit_code == 2
    assert (
        last_line(result)
        == "Error: Invalid value for '--kernel': 999999999999... (5000 digits) is too large a side in pixels."
    )


@pytest.mark.parametrize("value", [" native\n", "NATIVE"])
def test_native_is_read_like_a_number_without_the_spaces_around_it_and_the_help_spells_it(tmp_path, nets, value):
    dataset(tmp_path / "photos")
    result = crop(nets, "--category", "red", "--kernel", value, tmp_path / "photos", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "out" / ".fcnx-crop.json").read_text())["settings"]["kernels"] == [128, 160]
    assert "--kernel N|native " in invoke("crop", "--help").output  # not N|NATIVE, which is refused


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_evaluate_refuses_boxes_that_are_not_a_file_in_one_line(tmp_path, nets, kind):
    data = dataset(tmp_path / "data")
    boxes = Path("/dev/null") if kind == "device" else tmp_path / "boxes.jsonl"  # a FIFO blocks for ever
    if kind == "fifo":
        os.mkfifo(boxes)
    result = invoke("evaluate", *nets, "--kernel", "native", "--split", "all", "--data", data, "--crops", boxes)
    assert result.exit_code == 2
    assert last_line(result) == f"Error: {boxes}: cannot read boxes (OSError: not a regular file)"


@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_crop_refuses_a_journal_that_is_not_a_file_naming_it_and_keeping_the_outdir(tmp_path, nets, kind):
    photos, out = dataset(tmp_path / "photos"), tmp_path / "out"
    assert crop(nets, "--kernel", "native", photos, "-o", out).exit_code == 0
    (out / "boxes.jsonl").unlink()
    os.mkfifo(out / "boxes.jsonl") if kind == "fifo" else (out / "boxes.jsonl").mkdir()
    before = sorted(p.name for p in out.iterdir())
    result = crop(nets, "--kernel", "native", photos, "-o", out)
    assert result.exit_code == 2
    assert last_line(result) == (
        f"Error: {out / 'boxes.jsonl'}: is not a regular file (a FIFO, a folder?): move it away, or choose another OUTDIR"
    )
    assert sorted(p.name for p in out.iterdir()) == before


@pytest.mark.parametrize(
    ("kernel", "why"), [(0, "kernel 0 is not a side in pixels"), ("224", "kernel '224' is not a side in pixels")]
)
def test_an_ensemble_file_with_a_bad_kernel_is_one_line_naming_it(tmp_path, nets, kernel, why):
    manifest = tmp_path / "ensemble.json"
    manifest.write_text(json.dumps({"members": [], "kernel": kernel, "config": {}}))
    result = invoke("crop", "--ensemble", manifest, "x.png", "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert last_line(result) == f"Error: {manifest}: not an ensemble file of fcnx train --nets (ValueError: {why})"


def test_an_ensemble_file_that_is_a_fifo_is_one_line(tmp_path, nets):
    os.mkfifo(tmp_path / "ensemble.json")
    result = invoke("crop", "--ensemble", tmp_path / "ensemble.json", "x.png", "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert last_line(result) == (
        f"Error: {tmp_path / 'ensemble.json'}: not an ensemble file of fcnx train --nets (OSError: not a regular file)"
    )


def test_evaluate_skips_a_box_outside_its_image_naming_it(tmp_path, nets):
    data, out = dataset(tmp_path / "data"), tmp_path / "crops"
    assert crop(nets, "--kernel", "native", data, "-o", out).exit_code == 0
    lines = (out / "boxes.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    stale = next(r for r in records if r["file"] == "red/0.png")
    stale.update(x=5000.0, y=10.0)  # a box of a larger version of the image
    (out / "boxes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    result = invoke(
        "evaluate", *nets, "--kernel", "native", "--split", "all", "--data", data, "--crops", out / "boxes.jsonl"
    )
    assert result.exit_code == 1
    w, h = stale["w"], stale["h"]
    assert [line for line in result.stderr.splitlines() if line.startswith("error: ")] == [
        f"error: {data / 'red' / '0.png'}: its box (x=5000, y=10, w={w:g}, h={h:g}) lies outside the 200x170 image: "
        f"a box of another version of it?"
    ]


@pytest.mark.parametrize("kernel", [[], ["--kernel", "native"]])
def test_a_checkpoint_trained_under_the_smallest_input_is_named(tmp_path, tiny_registry, kernel):
    small = color_checkpoint(tmp_path / "small.safetensors", "tiny0", input_size=8)
    photos = dataset(tmp_path / "photos")
    result = invoke("crop", "--nets", "tiny0", "--weights", f"tiny0={small}", *kernel, photos, "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert last_line(result) == (
        f"Error: {small}: trained at 8 pixels, under tiny0's smallest input side 32: give a kernel"
    )


@pytest.mark.parametrize("command", ["evaluate", "suspects"])
@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EACCES])
def test_outputs_that_cannot_be_written_are_one_line(tmp_path, nets, monkeypatch, command, error):
    data, out = dataset(tmp_path / "data"), tmp_path / "out"

    def refuse(folder):
        raise OSError(error, os.strerror(error))

    monkeypatch.setattr(files, "_temporary", refuse)  # every atomic write of the job fails so
    extra = ["--split", "all"] if command == "evaluate" else []
    result = invoke(command, *nets, "--kernel", "native", *extra, "--data", data, "-o", out)
    assert result.exit_code == 1
    assert last_line(result) == f"Error: {out}: cannot write outputs ({os.strerror(error)})"


def test_export_outputs_that_cannot_be_written_are_one_line(tmp_path, nets, monkeypatch):
    out = tmp_path / "crops"
    assert crop(nets, "--kernel", "native", dataset(tmp_path / "photos"), "-o", out).exit_code == 0
    missing = invoke("export", out, "--format", "coco", "-o", "/proc/fcnx-export")
    assert missing.exit_code == 1
    assert last_line(missing) == "Error: /proc/fcnx-export: cannot write outputs (No such file or directory)"

    def refuse(folder):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files, "_temporary", refuse)
    full = invoke("export", out, "--format", "voc", "-o", tmp_path / "voc")
    assert full.exit_code == 1
    assert last_line(full) == f"Error: {tmp_path / 'voc'}: cannot write outputs (No space left on device)"


@pytest.mark.parametrize("kind", ["fifo", "binary"])
def test_export_refuses_a_class_list_it_cannot_read_in_one_line(tmp_path, nets, kind):
    out, classes = tmp_path / "crops", tmp_path / "classes.txt"
    assert crop(nets, "--kernel", "native", dataset(tmp_path / "photos"), "-o", out).exit_code == 0
    os.mkfifo(classes) if kind == "fifo" else classes.write_bytes(b"red\n\xff\xfe\n")
    result = invoke("export", out, "--format", "coco", "--classes", classes, "-o", tmp_path / "coco")
    assert result.exit_code == 2
    why = (
        "not a regular file"
        if kind == "fifo"
        else "'utf-8' codec can't decode byte 0xff in position 4: invalid start byte"
    )
    assert last_line(result) == f"Error: {classes}: cannot read the class list ({why})"


def test_a_fifo_among_the_dataset_lists_is_not_copied_and_cannot_block_the_end_of_a_crop(tmp_path, nets):
    root, out = tmp_path / "food", tmp_path / "out"
    dataset(root / "images")
    (root / "meta").mkdir()
    (root / "meta" / "classes.txt").write_text("".join(f"{name}\n" for name in COLORS))
    (root / "meta" / "test.txt").write_text("".join(f"{name}/0\n" for name in COLORS))
    os.mkfifo(root / "meta" / "notes.txt")
    result = crop(nets, "--kernel", "native", "--split", "test", root, "-o", out)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (out / "meta").iterdir()) == ["classes.txt", "test.txt"]
    assert (out / "meta" / "test.txt").read_bytes() == (root / "meta" / "test.txt").read_bytes()
