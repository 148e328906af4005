"""A field declared once on the crop record (fcnx.io.record.CropRecord) reaches ``boxes.jsonl`` and ``boxes.csv``
of a real ``fcnx crop`` run, and ``fcnx export`` still reads the lines: nothing else lists the record's fields.

The toy field lives on a subclass installed where the crop job builds and tables its records, as if it had been
added to :class:`CropRecord` itself.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field

from click.testing import CliRunner
from test_evaluate_suspects import make_dataset
from tiny_backbones import color_checkpoint

from fcnx.cli import cli
from fcnx.io.record import CropRecord


@dataclass(frozen=True, kw_only=True)
class Toy(CropRecord):
    toy: int = field(default=7)


def test_a_toy_field_declared_once_reaches_the_journal_and_the_table(tmp_path, tiny_registry, monkeypatch):
    monkeypatch.setattr("fcnx.jobs.outdir.outputs.CropRecord", Toy)
    monkeypatch.setattr("fcnx.jobs.outdir.reports.CropRecord", Toy)
    weights = color_checkpoint(tmp_path / "tiny0.safetensors", "tiny0")
    root, out = tmp_path / "data", tmp_path / "out"
    n = make_dataset(root)
    args = ["crop", "--nets", "tiny0", "--weights", f"tiny0={weights}", str(root), "-o", str(out), "-q"]
    result = CliRunner().invoke(cli, [*args, "--split", "test", "--dry-run"])
    assert result.exit_code == 0, result.output
    lines = (out / "boxes.jsonl").read_text().splitlines()
    assert len(lines) == n
    assert all(list(json.loads(line))[-2:] == ["guesses", "toy"] and json.loads(line)["toy"] == 7 for line in lines)
    with open(out / "boxes.csv", newline="") as table:
        rows = list(csv.reader(table))
    assert rows[0][-3:] == ["map", "instance", "toy"] and {row[-1] for row in rows[1:]} == {"7"} and len(rows) == n + 1
    export = CliRunner().invoke(cli, ["export", str(out), "--format", "coco", "-o", str(tmp_path / "coco")])
    assert export.exit_code == 0, export.output
