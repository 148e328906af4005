"""`fcnx evaluate --crops boxes.jsonl` reads the file as `fcnx crop` reads its resume journal.

A last line cut by a killed run is dropped with a warning, a later record for the same image and
category wins, and images without a box are refused before any net is loaded (or left out on
both sides with --skip-missing).
"""

from __future__ import annotations

import json
from pathlib import PurePosixPath

import pytest
from click.testing import CliRunner
from test_evaluate_suspects import make_dataset
from tiny_backbones import color_checkpoint

from fcnx.cli import cli
from fcnx.errors import UsageError
from fcnx.io.discovery import ImageItem
from fcnx.io.journal import read_journal
from fcnx.jobs.scoring import read_boxes


def test_journal_lines_and_a_cut_last_line(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_bytes(b'{"a": 1}\n\n[1]\n{"b": 2}\n{"c": ')
    journal = read_journal(path)
    assert journal.lines == [(1, {"a": 1}), (3, None), (4, {"b": 2})] and journal.cut and journal.unterminated
    path.write_bytes(b'{"a": 1}\n{"b": 2}')  # complete, only the newline missing: kept
    journal = read_journal(path)
    assert journal.lines == [(1, {"a": 1}), (2, {"b": 2})] and not journal.cut and journal.unterminated
    path.write_bytes(b'{"a": 1}\n\xff\xfe\n')
    assert read_journal(path).lines == [(1, {"a": 1}), (2, None)] and not read_journal(path).unterminated


def record(path, x, category="red", **extra):
    return json.dumps({"path": str(path), "x": x, "y": 0, "w": 10, "h": 10, "category": category, **extra}) + "\n"


def test_later_records_win_and_a_cut_line_is_dropped(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    boxes = tmp_path / "boxes.jsonl"
    boxes.write_text(
        record(a, 1)
        + record(a, 1, "blue")
        + record(b, 5, file="red/b.png")
        + record(a, 2)
        + record(tmp_path / "elsewhere.png", 7, file="red/b.png")
        + '{"path": "'
        + str(a)
    )
    index = read_boxes(boxes)
    assert index.warnings == [f"{boxes}: the last line is cut short (a killed run?), dropped"]
    assert index.find(ImageItem(a, a.relative_to(tmp_path), "red")) == (2, 0, 10, 10)  # the resumed run's box
    assert index.find(ImageItem(a, a.relative_to(tmp_path), "blue")) == (1, 0, 10, 10)
    assert index.find(ImageItem(tmp_path / "moved.png", PurePosixPath("red/b.png"), "red")) == (7, 0, 10, 10)
    boxes.write_text(record(a, 1) + "{not json\n" + record(b, 1))
    with pytest.raises(UsageError, match=r"boxes\.jsonl: line 2: not a box record \(ValueError: not a JSON object\)"):
        read_boxes(boxes)


def test_images_without_a_box_are_failures_or_left_out(tmp_path, tiny_registry):
    weights = color_checkpoint(tmp_path / "tiny0.safetensors", "tiny0")
    args = ["--nets", "tiny0", "--weights", f"tiny0={weights}"]
    root = tmp_path / "data"
    n = make_dataset(root)
    crop = CliRunner().invoke(
        cli, ["crop", *args, str(root), "-o", str(tmp_path / "cropped"), "--dry-run", "-q", "--split", "test"]
    )
    assert crop.exit_code == 0, crop.output
    journal = tmp_path / "cropped" / "boxes.jsonl"
    lines = journal.read_text().splitlines(keepends=True)
    kept = [
        line
        for line in lines
        if not line.startswith(
            ('{"path": "' + str(root / "images/red/0.png"), '{"path": "' + str(root / "images/green/3.png"))
        )
    ]
    assert len(kept) == n - 2
    journal.write_text("".join(kept) + lines[0][:40])  # and a line cut by a kill
    evaluate = ["evaluate", *args, "--data", str(root), "-q", "--crops", str(journal)]
    result = CliRunner().invoke(cli, evaluate)
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        f"error: {root / name}: no box for this image (its crop failed, or crop the same split first)"
        for name in ("images/red/0.png", "images/green/3.png")
    ]
    assert "the last line is cut short (a killed run?), dropped" in result.stderr
    assert result.stdout.splitlines()[1].split()[1] == str(n - 2)  # the table counts the others
    result = CliRunner().invoke(cli, [*evaluate, "--skip-missing", "-o", str(tmp_path / "ev")])
    assert result.exit_code == 0, result.output
    assert "2 image(s) without a box left out (--skip-missing)" in result.stderr
    saved = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert saved["rows"][0]["images"] == n - 2 and len(saved["without_box"]) == 2
    result = CliRunner().invoke(cli, ["evaluate", *args, "--data", str(root), "--skip-missing"])
    assert result.exit_code == 2 and "--skip-missing goes with --crops FILE" in result.stderr
