"""Hostile inputs through the commands: files changing under a run, lying weights, absurd option values, odd names."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from image_corpus import chunk_bomb, lying_jpeg, square
from tiny_backbones import LAYOUTS, TinyNet, color_checkpoint, colorize

from fcnx.backbones import checkpoint
from fcnx.cli import cli
from fcnx.engine import decode as decode_module

NETS = ["tiny0", "tiny43"]


@pytest.fixture
def weights(tmp_path, tiny_registry):
    return {name: color_checkpoint(tmp_path / "weights" / f"{name}.safetensors", name) for name in NETS}


def net_args(weights: dict[str, Path]) -> list[str]:
    return ["--nets", ",".join(weights), *(a for n, p in weights.items() for a in ("--weights", f"{n}={p}"))]


def crop(weights, *args) -> object:
    argv = ["crop", *net_args(weights), "--workers", "0", "--max-scale", "1.5", *map(str, args)]
    return CliRunner().invoke(cli, argv, catch_exceptions=False)


def _refuse(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")


def journal(out: Path) -> list[dict]:
    """The records of ``boxes.jsonl``, parsed as strict JSON (a bare NaN or Infinity fails)."""
    path = out / "boxes.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    return [json.loads(line, parse_constant=_refuse) for line in lines]


def errors(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error: ")]


# --------------------------------------------------------------------------- a file changes under the run


def _after_decoding(monkeypatch, name: str, action) -> None:
    """Run ``action`` right after the image called ``name`` was decoded, before its outputs are written."""
    real = decode_module.decode

    def decode(item, min_side):
        decoded = real(item, min_side)
        if item.path.name == name:
            action(item.path)
        return decoded

    monkeypatch.setattr(decode_module, "decode", decode)


def test_an_input_replaced_after_decoding_is_named_and_redone_by_the_rerun(tmp_path, weights, monkeypatch):
    photos, out = tmp_path / "photos", tmp_path / "out"
    square(photos / "a.png")
    square(photos / "b.png")
    replacement = square(tmp_path / "new.png", size=(130, 170), top=0, left=0)
    _after_decoding(monkeypatch, "b.png", lambda path: os.replace(replacement, path))
    result = crop(weights, "--category", "red", photos, "-o", out)
    assert result.exit_code == 1
    assert errors(result) == [
        f"error: {photos / 'b.png'}: replaced or modified since it was read: its box is from the earlier file"
    ]
    assert [r["file"] for r in journal(out)] == ["a.png"]  # no record carries the new file with the old box
    monkeypatch.undo()
    rerun = crop(weights, "--category", "red", photos, "-o", out)
    assert rerun.exit_code == 0, rerun.output
    [b] = [r for r in journal(out) if r["file"] == "b.png"]
    assert (b["width"], b["height"], b["source_size"]) == (170, 130, (photos / "b.png").stat().st_size)
    assert (b["x"], b["y"]) == (0, 0)


def test_an_input_deleted_after_decoding_is_reported_as_deleted(tmp_path, weights, monkeypatch):
    photos, out = tmp_path / "photos", tmp_path / "out"
    square(photos / "a.png")
    square(photos / "b.png")
    _after_decoding(monkeypatch, "b.png", Path.unlink)
    result = crop(weights, "--category", "red", photos, "-o", out)
    assert result.exit_code == 1 and "cannot write outputs" not in result.stderr
    assert errors(result) == [f"error: {photos / 'b.png'}: deleted since it was read: no outputs written"]
    assert [r["file"] for r in journal(out)] == ["a.png"]


def test_dry_run_records_the_identity_of_the_file_decoded(tmp_path, weights, monkeypatch):
    photos, out = tmp_path / "photos", tmp_path / "out"
    square(photos / "a.png")
    before = (photos / "a.png").stat()
    _after_decoding(monkeypatch, "a.png", lambda path: path.write_bytes(path.read_bytes() + b"junk at the end"))
    assert crop(weights, "--category", "red", "--dry-run", photos, "-o", out).exit_code == 0
    [record] = journal(out)
    assert (record["source_size"], record["source_mtime_ns"]) == (before.st_size, before.st_mtime_ns)
    monkeypatch.undo()  # the file changed after it was read: the rerun does not take it as done
    assert "1 image(s) to do" in crop(weights, "--category", "red", "--dry-run", photos, "-o", out).stderr


# --------------------------------------------------------------------------- hostile files in every command


def hostile_folder(folder: Path) -> dict[str, str]:
    """Good squares and hostile files in ``folder``; returns each hostile file's name -> words of its error."""
    square(folder / "good.png")
    square(folder / os.fsdecode(b"caf\xe9.png"))  # Latin-1: not UTF-8
    chunk_bomb(folder / "bomb.png")
    lying_jpeg(folder / "liar.jpg", 9000, 9000)
    os.mkfifo(folder / "pipe.jpg")
    (folder / "two\nlines.png").write_bytes(b"junk")
    return {
        "bomb.png": "Decompressed data too large",
        "liar.jpg": "over the budget",
        "pipe.jpg": "is a named pipe, not a regular file: not opened",
        "two\\nlines.png": "not an image file Pillow can read",
    }


def test_suspects_goes_through_hostile_files_one_line_each(tmp_path, weights):
    data = tmp_path / "data"
    bad = hostile_folder(data / "red")
    square(data / "green" / "0.png")
    out = tmp_path / "review"
    result = CliRunner().invoke(cli, ["suspects", *net_args(weights), "--data", str(data), "-o", str(out), "-q"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    lines = errors(result)
    assert len(lines) == len(bad)
    for name, words in bad.items():
        assert any(line.startswith(f"error: {data / 'red' / name}: ") and words in line for line in lines), name
    assert len(json.loads((out / "suspects.json").read_text())["failures"]) == len(bad)


def test_crop_goes_through_hostile_files_one_line_each(tmp_path, weights):
    photos, out = tmp_path / "photos", tmp_path / "out"
    bad = hostile_folder(photos)
    (photos / os.fsdecode(b"caf\xe9.png")).rename(
        photos / "cafe.png"
    )  # the journal of non-UTF-8 names: issue 15, item 2
    result = crop(weights, "--category", "red", photos, "-o", out)
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = errors(result)
    assert len(lines) == len(bad)
    for name, words in bad.items():
        assert any(line.startswith(f"error: {photos / name}: ") and words in line for line in lines), name
    assert sorted(r["file"] for r in journal(out)) == ["cafe.png", "good.png"]
    assert (out / "boxes.csv").is_file()


# --------------------------------------------------------------------------- weights that lie


def nan_checkpoint(path: Path, name: str) -> Path:
    model = colorize(TinyNet(LAYOUTS[name][1], 4))
    tensors = {k: torch.full_like(v, float("nan")) for k, v in model.state_dict().items()}
    meta = checkpoint.CheckpointMeta(arch=name, classes=["red", "green", "blue", "none"], input_size=299)
    return checkpoint.save(path, tensors, meta)


@pytest.mark.parametrize("category", [["--category", "red"], []], ids=["category", "top-class"])
def test_a_checkpoint_full_of_nan_is_an_error_for_each_image_never_nan_in_the_journal(tmp_path, weights, category):
    weights = {**weights, "tiny43": nan_checkpoint(tmp_path / "nan.safetensors", "tiny43")}
    photos, out = tmp_path / "photos", tmp_path / "out"
    square(photos / "a.png")
    square(photos / "b.png", top=0)
    result = crop(weights, *category, photos, "-o", out)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert errors(result) == [
        f"error: {photos / name}: tiny43 gives non-finite outputs (NaN or infinity): broken weights (image 160x120)"
        for name in ("a.png", "b.png")
    ]
    assert journal(out) == []
    assert "NaN" not in (out / "boxes.csv").read_text()


@pytest.mark.parametrize(
    "meta, field",
    [
        ({"classes": "red"}, "field 'classes' must be a list of class names, got str 'red'"),
        ({"classes": ["red", "red"]}, "field 'classes' names 'red' more than once"),
        ({"classes": ["red", ""]}, "field 'classes': entry 1 is an empty name"),
        ({"input_size": 1000000}, "field 'input_size' must be a whole number of pixels in [1, 4096], got 1000000"),
    ],
    ids=["string", "duplicate", "empty", "input-size"],
)
def test_crop_refuses_lying_metadata_in_one_line_naming_the_file_and_field(tmp_path, weights, meta, field):
    model = colorize(TinyNet(LAYOUTS["tiny0"][1], 4))
    data = {"format_version": 1, "arch": "tiny0", "classes": ["red", "green", "blue", "none"], "input_size": 299}
    from safetensors.torch import save_file

    path = tmp_path / "lying.safetensors"
    save_file(model.state_dict(), str(path), metadata={"fcnx": json.dumps({**data, **meta})})
    square(tmp_path / "photos" / "a.png")
    result = crop({"tiny0": path}, "--category", "red", tmp_path / "photos", "-o", tmp_path / "out")
    assert result.exit_code == 1 and result.stderr.strip() == f"Error: {path}: bad fcnx metadata: {field}"


# --------------------------------------------------------------------------- option values


@pytest.mark.parametrize(
    "option, message",
    [
        (["--step", "nan"], "Invalid value for '--step': 'nan' is not a finite number."),
        (["--step", "inf"], "Invalid value for '--step': 'inf' is not a finite number."),
        (["--step", "1"], "Invalid value for '--step': 1.0 is not in the range x>1."),
        (["--max-scale", "nan"], "Invalid value for '--max-scale': 'nan' is not a finite number."),
        (["--max-scale", "inf"], "Invalid value for '--max-scale': 'inf' is not a finite number."),
        (
            ["--max-scale", "1e308"],
            "--step 1.2 with --max-scale 1e+308: a scale step of 1.2 up to 1e+308 times the first level gives 3890 "
            "pyramid levels; at most 100 are allowed",
        ),
        (
            ["--step", "1.000001", "--max-scale", "3"],
            "--step 1.000001 with --max-scale 3.0: a scale step of 1.000001 up to 3.0 times the first level gives "
            "1098613 pyramid levels; at most 100 are allowed",
        ),
        (["--category", ""], "Invalid value for '--category': a category must not be empty."),
        (["--category", "²"], "unknown category '²'"),
        (["--category", "٣"], "unknown category '٣'"),
    ],
    ids=[
        "step-nan",
        "step-inf",
        "step-1",
        "scale-nan",
        "scale-inf",
        "scale-1e308",
        "million-levels",
        "empty",
        "sup2",
        "arabic3",
    ],
)
def test_absurd_option_values_are_one_line_usage_errors(tmp_path, weights, option, message):
    square(tmp_path / "a.png")
    argv = ["crop", *net_args(weights), "--workers", "0", "--category", "red", *option, str(tmp_path / "a.png")]
    result = CliRunner().invoke(cli, [*argv, "-o", str(tmp_path / "out")], catch_exceptions=False)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert message in result.stderr.strip().splitlines()[-1]
    if "unknown category" not in message:  # refused before OUTDIR is made
        assert not (tmp_path / "out").exists()


def test_an_ascii_index_still_names_a_category(tmp_path, weights):
    square(tmp_path / "photos" / "a.png")
    result = crop(weights, "--category", "0", tmp_path / "photos", "-o", tmp_path / "out")
    assert result.exit_code == 0 and [r["category"] for r in journal(tmp_path / "out")] == ["red"]


def test_evaluate_and_suspects_with_a_checkpoint_full_of_nan_say_so_in_one_line(tmp_path, weights):
    weights = {**weights, "tiny43": nan_checkpoint(tmp_path / "nan.safetensors", "tiny43")}
    data = tmp_path / "data"
    square(data / "red" / "0.png")
    square(data / "green" / "0.png")
    message = "tiny43 gives non-finite outputs (NaN or infinity): broken weights"
    evaluated = CliRunner().invoke(cli, ["evaluate", *net_args(weights), "--data", str(data), "--split", "all", "-q"])
    lines = [
        f"{data / c / '0.png'}: {message} (original image)" for c in ("green", "red")
    ]  # per image, the run goes on
    assert evaluated.exit_code == 1 and errors(evaluated) == [f"error: {line}" for line in lines]
    assert evaluated.stderr.splitlines()[-1] == f"Error: {data}: no image could be scored (2 skipped, e.g. {lines[0]})"
    review = tmp_path / "review"
    suspects = CliRunner().invoke(cli, ["suspects", *net_args(weights), "--data", str(data), "-o", str(review), "-q"])
    assert suspects.exit_code == 1 and "Traceback" not in suspects.output
    assert errors(suspects) == [f"error: {data / c / '0.png'}: {message} (image 160x120)" for c in ("green", "red")]
    json.loads((review / "suspects.json").read_text(), parse_constant=_refuse)  # strict JSON: no bare NaN
