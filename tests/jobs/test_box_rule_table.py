"""A box rule registered in the one table (:data:`fcnx.method.boxes.RULES`) and nowhere else goes through
``fcnx crop --box`` -> ``boxes.jsonl`` / ``boxes.csv`` -> ``fcnx export --box``: nothing else lists the rules."""

from __future__ import annotations

import csv
import json

from click.testing import CliRunner
from test_evaluate_suspects import make_dataset
from tiny_backbones import color_checkpoint

from fcnx.cli import cli
from fcnx.method import boxes


def _whole(found: boxes.Found) -> boxes.Box:
    height, width = found.pyramid.size
    return 0.0, 0.0, float(width), float(height)


def test_a_toy_rule_in_the_table_reaches_crop_the_records_and_export(tmp_path, tiny_registry, monkeypatch):
    monkeypatch.setitem(boxes.RULES, "toy", boxes.Rule("toy", _whole, "the whole image"))
    weights = color_checkpoint(tmp_path / "tiny0.safetensors", "tiny0")
    root, out = tmp_path / "data", tmp_path / "out"
    n = make_dataset(root)
    args = ["crop", "--nets", "tiny0", "--weights", f"tiny0={weights}", "--box", "toy", str(root), "-o", str(out)]
    result = CliRunner().invoke(cli, [*args, "-q", "--split", "test", "--dry-run"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (out / "boxes.jsonl").read_text().splitlines()]
    assert len(records) == n and {r["box_kind"] for r in records} == {"toy"}
    assert all((r["x"], r["y"], r["w"], r["h"]) == (0, 0, r["width"], r["height"]) for r in records)
    assert 0 < sum(r["found"] for r in records) < n  # found or not, each box is the rule's
    with open(out / "boxes.csv", newline="") as table:
        rows = list(csv.DictReader(table))
    assert [row["box_kind"] for row in rows] == ["toy"] * n
    coco = tmp_path / "coco"
    export = CliRunner().invoke(cli, ["export", str(out), "--format", "coco", "--box", "toy", "-o", str(coco)])
    assert export.exit_code == 0, export.output
    labels = json.loads((coco / "labels.json").read_text())
    sizes = {image["id"]: (image["width"], image["height"]) for image in labels["images"]}
    exported = [(a["bbox"], sizes[a["image_id"]]) for a in labels["annotations"]]
    assert len(exported) == n and all(bbox == [0, 0, w, h] for bbox, (w, h) in exported)
