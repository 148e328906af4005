"""The crop record (fcnx/io/record.py): one declaration gives the JSON line, the checks and the boxes.csv row.

Real records: the pinned ``fcnx crop`` outputs of tests/data/crop_pin (lines and table of the same run).
"""

from __future__ import annotations

import json
import os
from dataclasses import fields
from pathlib import Path

import pytest

from fcnx.errors import UsageError
from fcnx.io.journal import dump_line, read_box_lines, read_records
from fcnx.io.record import BOXES, FIELDS, OPTIONAL, BoxLine, CropRecord, record_problem
from fcnx.jobs.outdir.reports import write_table
from fcnx.testing.records import crop_record

PIN = Path(__file__).parents[1] / "data" / "crop_pin"


@pytest.mark.parametrize(("lines", "table"), [("boxes.jsonl", "boxes.csv"), ("square.jsonl", "square.csv")])
def test_pinned_lines_round_trip_and_give_the_pinned_table(tmp_path, lines, table):
    raw = (PIN / lines).read_bytes().splitlines(keepends=True)
    records = [CropRecord.from_line(line) for line in raw]
    assert [dump_line(r.to_json()) for r in records] == raw  # byte for byte
    assert [CropRecord.from_json(r.to_json()) for r in records] == records
    nets = list(records[0].net_scores)
    assert nets == ["tiny_vgg", "tiny_resnet", "tiny_inception"]
    write_table(tmp_path, (r.to_json() for r in records), nets)
    assert (tmp_path / "boxes.csv").read_bytes() == (PIN / table).read_bytes()


def test_the_csv_row_and_columns():
    record = CropRecord.parse(crop_record("/d/a.jpg", "a.jpg", "pizza", (512, 384), (1.0, 2.0, 30.0, 40.0)))
    columns = CropRecord.csv_columns(["n0", "n1"])
    assert columns[:4] == ["file", "path", "label", "category"] and columns[12:14] == ["cell_i", "cell_j"]
    assert columns[24:28] == ["score:n0", "score:n1", "vote:n0", "vote:n1"]
    assert columns[28:] == ["box_kind", *(f"{b}_{c}" for b in BOXES for c in "xywh"), "map", "instance"]
    row = record.csv_row(["net0", "net2", "absent"])
    assert (
        row["file"] == "a.jpg" and row["score:net2"] == 0.9 and row["vote:net0"] is True and row["score:absent"] is None
    )
    assert (row["tight_x"], row["tight_h"], row["window_w"]) == (1.0, 40.0, 384.0)
    assert "fitted_x" not in row and row["instance"] == 1  # no fitted box: its columns stay empty


def test_fields_types_and_box_kinds_come_from_the_dataclass():
    declared = [f.name for f in fields(CropRecord)]
    assert list(FIELDS) + list(OPTIONAL) == sorted(declared, key=lambda n: n in OPTIONAL)
    assert BOXES == ("window", "tight", "fitted")
    assert FIELDS["label"] == (str, type(None)) and FIELDS["confidence"] == (int, float)
    assert OPTIONAL["window"] == (list, type(None)) and OPTIONAL["guesses"] == (list,)


GOOD = crop_record("/d/a.jpg", "a.jpg", "pizza", (512, 384), (1.0, 2.0, 30.0, 40.0))
#: one change per check of record_problem, and the one line it gives
CHECKS = [
    ({"path": None}, "no field 'path'"),
    ({"votes": 2.5}, "field 'votes' has the wrong type or value (float)"),
    ({"found": 1}, "field 'found' has the wrong type or value (int)"),
    ({"w": 0.0}, "field 'w' is not a side (0.0)"),
    ({"cell": [0]}, "field 'cell' is not two integers"),
    ({"net_scores": {"a": "x"}}, "field 'net_scores' is not a map of net names to numbers"),
    ({"net_votes": {"a": 1}}, "field 'net_votes' is not a map of net names to booleans"),
    ({"crop": "../x.jpg"}, "field 'crop' is not a path inside OUTDIR"),
    ({"instance": "1"}, "field 'instance' has the wrong type or value (str)"),
    ({"tight": [1.0, 2.0, 3.0]}, "field 'tight' is not a box [x, y, w, h]"),
    ({"map": "/abs.npy"}, "field 'map' is not a path inside OUTDIR"),
    ({"guesses": [["a", 0.5]]}, "field 'guesses' is not a list of [class, probability, votes]"),
    ({"version": 2}, "format version 2; this fcnx reads version 1"),
]


@pytest.mark.parametrize(("change", "problem"), CHECKS, ids=[p for _, p in CHECKS])
def test_each_check_is_one_line_naming_the_file_and_line(tmp_path, change, problem):
    bad = {k: v for k, v in (GOOD | change).items() if v is not None or k != "path"}
    assert record_problem(bad) == problem
    with pytest.raises(ValueError, match=f"^{problem}$".replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        CropRecord.parse(bad)
    path = tmp_path / "boxes.jsonl"
    path.write_bytes(dump_line(GOOD) + dump_line(bad) + dump_line(GOOD) + b'{"path": "/d/b.j')
    warnings: list[str] = []
    numbers = [number for number, _ in read_records(path, warnings)]
    assert numbers == [1, 3]
    assert warnings == [
        f"{path}:2: not a crop record ({problem}); skipped",
        f"{path}: the last line is cut short (a killed run?), dropped",
    ]


def test_a_box_line_needs_a_box_and_says_which_line_is_not_one(tmp_path):
    path = tmp_path / "boxes.jsonl"
    path.write_text('{"path": "a.png", "box": {"x": 1, "y": 2, "w": 3, "h": 4}, "width": 9, "height": 8}\n')
    (number, line), *rest = list(read_box_lines(path, []))
    assert (number, line.box, line.size, line.category, rest) == (1, (1.0, 2.0, 3.0, 4.0), (8, 9), None, [])
    assert BoxLine.of(GOOD).box == (1.0, 2.0, 30.0, 40.0) and BoxLine.of(GOOD).file == "a.jpg"
    for text, why in [
        ("[1]", "ValueError: not a JSON object"),
        ('{"path": "a.png", "x": 1, "y": 2, "w": 0, "h": 4}', "ValueError: empty or invalid box (1.0, 2.0, 0.0, 4.0)"),
        ('{"path": "a.png", "x": "1", "y": 2, "w": 3, "h": 4}', "ValueError: field 'x' is not a number ('1')"),
        ('{"path": 3, "x": 1, "y": 2, "w": 3, "h": 4}', "ValueError: field 'path' is not a path (3)"),
        ('{"x": 1, "y": 2, "w": 3, "h": 4}', "KeyError: 'path'"),
        ('{"path": "a", "x": 1, "y": 2, "w": 3, "h": 4, "category": 7}', "ValueError: its category is no name"),
        ('{"path": "a", "x": 1, "y": 2, "w": 3, "h": 4, "width": true}', "ValueError: field 'width' is not a side"),
    ]:
        path.write_text(json.dumps({"path": "ok.png", "x": 0, "y": 0, "w": 1, "h": 1}) + "\n" + text + "\n")
        with pytest.raises(UsageError) as caught:
            list(read_box_lines(path, []))
        assert str(caught.value).startswith(f"{path}: line 2: not a box record ({why}")
        assert "\n" not in str(caught.value)


def test_an_unreadable_file_is_one_line(tmp_path):
    fifo = tmp_path / "boxes.jsonl"
    os.mkfifo(fifo)  # a reader would block on it
    for read in (read_records, read_box_lines):
        with pytest.raises(UsageError, match=r"boxes\.jsonl: cannot read boxes \(OSError: not a regular file\)$"):
            list(read(fifo, []))
