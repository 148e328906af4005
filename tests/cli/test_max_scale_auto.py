"""``fcnx crop --max-scale auto`` end to end on fcnx-tiny's demo canvases (real files, the real CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

import fcnx_tiny
from fcnx.cli import cli
from fcnx.engine.cropper import Cropper
from fcnx.io.discovery import dataset_items

DEMO = Path(fcnx_tiny.__file__).parent / "demo"
NETS = "tiny_vgg,tiny_resnet,tiny_inception"


def crop(out: Path, *options: str):
    argv = ["crop", str(DEMO), "-o", str(out), "--nets", NETS, "--dry-run", "-q", *options]
    return CliRunner().invoke(cli, argv)


def test_auto_levels_reach_a_tenth_of_the_short_side(tmp_path, one_thread):
    result = crop(tmp_path, "--max-scale", "auto")
    assert result.exit_code == 0, result.output
    records = {r["file"]: r for r in map(json.loads, (tmp_path / "boxes.jsonl").read_text().splitlines())}
    # kernel 56, step 1.2: 13 levels reach a window of 56 / (56 * 1.2**12) = 11 % of the short side; the
    # largest level's short side, 499, is under 8x every canvas's (99 px and more)
    assert {r["levels_examined"] for r in records.values()} == {13} and len(records) == 10
    assert json.loads((tmp_path / ".fcnx-crop.json").read_text())["settings"]["max_scale"] == "auto"
    cropper = Cropper.from_nets(NETS.split(","), kernel=56, device="cpu", max_scale="auto")
    assert cropper.min_side == 560
    for item in dataset_items(DEMO):  # the library gives the CLI's boxes
        box = cropper.crop_image(item.path, label=item.label).boxes[0]
        assert [box.x, box.y, box.w, box.h] == pytest.approx([records[item.rel.as_posix()][k] for k in "xywh"])


def test_auto_stops_where_a_small_image_has_no_more_pixels(tmp_path, one_thread):
    photos = tmp_path / "photos"
    photos.mkdir()
    item = next(i for i in dataset_items(DEMO) if i.label == "bag")
    Image.open(item.path).crop((40, 40, 70, 60)).save(photos / "small.png")  # 30 x 20 pixels
    argv = ["crop", str(photos), "-o", str(tmp_path / "out"), "--nets", NETS, "--category", "bag", "--dry-run", "-q"]
    result = CliRunner().invoke(cli, [*argv, "--max-scale", "auto"])
    assert result.exit_code == 0, result.output
    (record,) = map(json.loads, (tmp_path / "out" / "boxes.jsonl").read_text().splitlines())
    # level k's short side is round(56 * 1.2**k): 139 (k = 5) <= 8 x 20 = 160 < 167 (k = 6)
    assert record["levels_examined"] == 6 and record["width"] == 30 and record["height"] == 20


def test_auto_is_a_setting_and_other_words_are_refused(tmp_path):
    assert crop(tmp_path / "a", "--max-scale", "3").exit_code == 0
    refused = crop(tmp_path / "a", "--max-scale", "auto")
    assert refused.exit_code != 0 and "max_scale" in refused.output
    bad = crop(tmp_path / "b", "--max-scale", "big")
    assert bad.exit_code == 2 and "'big' is not a valid float" in bad.output
