"""``fcnx crop --box tight|square|fitted`` end to end on fcnx-tiny's demo canvases with their true boxes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import fcnx_tiny
from fcnx.cli import cli
from fcnx.engine.cropper import Cropper
from fcnx.io.discovery import dataset_items
from fcnx.method import evidence, geometry, metrics
from fcnx.method.selection import select

DEMO = Path(fcnx_tiny.__file__).parent / "demo"
NETS = ["tiny_vgg", "tiny_resnet", "tiny_inception"]
#: boxes.csv's columns before --box existed (with these nets): square runs keep them, in this order, first
COLUMNS = [
    "file",
    "path",
    "label",
    "category",
    "category_index",
    "found",
    "votes",
    "nets",
    "confidence",
    "mean_confidence",
    "scale",
    "level",
    "cell_i",
    "cell_j",
    "x",
    "y",
    "w",
    "h",
    "x1",
    "y1",
    "x2",
    "y2",
    "crop",
    "heatmap",
    "score:tiny_vgg",
    "score:tiny_resnet",
    "score:tiny_inception",
    "vote:tiny_vgg",
    "vote:tiny_resnet",
    "vote:tiny_inception",
]


def crop(out: Path, *options: str) -> tuple[dict[str, dict], list[dict[str, str]]]:
    argv = ["crop", str(DEMO), "-o", str(out), "--nets", ",".join(NETS), "--dry-run", "-q", *options]
    result = CliRunner().invoke(cli, argv, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (out / "boxes.jsonl").read_text().splitlines()]
    with (out / "boxes.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    return {r["file"]: r for r in records}, rows


def xywh(record: dict) -> list[float]:
    return [record[k] for k in "xywh"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tight")
    return {"tight_out": tmp / "tight"} | {
        box: crop(tmp / box, "--box", box, *(["--heatmaps-npy"] if box == "tight" else []))
        for box in ("square", "tight", "fitted")
    }


def test_square_boxes_are_the_papers_windows_and_the_old_columns_come_first(runs, one_thread):
    records, rows = runs["square"]
    cropper = Cropper.from_nets(NETS, kernel=56, device="cpu")
    assert len(records) == 10
    for item in dataset_items(DEMO):
        record = records[item.rel.as_posix()]
        size, levels, label_levels, _, _ = cropper.label_levels(item, item.label)
        choice = select(label_levels)
        window = geometry.cell_to_box(
            choice.cell, size, levels[choice.level][1], cropper.ensemble.kernel, cropper.ensemble.stride
        )
        assert record["box_kind"] == "square"
        assert xywh(record) == pytest.approx(window) and record["window"] == pytest.approx(window)
    assert list(rows[0])[: len(COLUMNS)] == COLUMNS
    added = ["box_kind"] + [f"{k}_{c}" for k in ("window", "tight", "fitted") for c in "xywh"] + ["map", "instance"]
    assert list(rows[0])[len(COLUMNS) :] == added
    assert all(r["fitted"] is None for r in records.values()) and {r["fitted_x"] for r in rows} == {""}


def test_tight_boxes_fit_the_demo_objects_better_than_the_square(runs):
    square, _ = runs["square"]
    tight, rows = runs["tight"]
    truth = json.loads((DEMO / "boxes.json").read_text())
    assert square.keys() == tight.keys()
    for key, record in tight.items():
        # the same choice: the window is the square run's box; the tight box is what this run crops
        assert (
            record["box_kind"] == "tight" and record["window"] == xywh(square[key]) and xywh(record) == record["tight"]
        )
        assert record["tight"] == square[key]["tight"]
    assert {r["file"]: float(r["tight_w"]) for r in rows} == {k: r["tight"][2] for k, r in tight.items()}
    keys = sorted(tight)
    boxes = {name: np.array([xywh(run[k]) for k in keys]) for name, run in (("square", square), ("tight", tight))}
    true = np.array([truth[k.removeprefix("images/")] for k in keys])
    iou = {name: metrics.box_iou(b, true) for name, b in boxes.items()}
    assert iou["tight"].mean() > iou["square"].mean() and iou["tight"].mean() >= 0.3
    assert np.mean(iou["tight"] >= 0.4) >= np.mean(iou["square"] >= 0.4)


def test_fitted_boxes_refine_the_tight_ones_and_fit_the_demo_objects_better(runs):
    pytest.importorskip("cv2")
    tight, _ = runs["tight"]
    fitted, rows = runs["fitted"]
    truth = json.loads((DEMO / "boxes.json").read_text())
    assert fitted.keys() == tight.keys()
    for key, record in fitted.items():
        # the same choice and tight box as the tight run; the fitted box is what this run crops
        assert record["box_kind"] == "fitted" and xywh(record) == record["fitted"]
        assert record["window"] == tight[key]["window"] and record["tight"] == tight[key]["tight"]
    assert {r["file"]: float(r["fitted_h"]) for r in rows} == {k: r["fitted"][3] for k, r in fitted.items()}
    keys = sorted(fitted)
    true = np.array([truth[k.removeprefix("images/")] for k in keys])
    iou = {
        name: metrics.box_iou(np.array([run[k][name] for k in keys]), true)
        for name, run in (("tight", tight), ("fitted", fitted))
    }
    assert iou["fitted"].mean() > iou["tight"].mean() + 0.1
    assert np.mean(iou["fitted"] >= 0.7) > np.mean(iou["tight"] >= 0.7)


def test_fitted_crops_are_cut_to_the_fitted_box_and_resume_only_as_fitted(tmp_path, one_thread):
    pytest.importorskip("cv2")
    from PIL import Image

    out = tmp_path / "o"
    argv = ["crop", str(DEMO), "-o", str(out), "--nets", ",".join(NETS), "-q", "--box", "fitted"]
    assert CliRunner().invoke(cli, argv, catch_exceptions=False).exit_code == 0
    records = [json.loads(line) for line in (out / "boxes.jsonl").read_text().splitlines()]
    for record in records:
        with Image.open(out / record["crop"]) as image:
            x0, y0, x1, y1 = (int(np.floor(v + 0.5)) for v in (record["x1"], record["y1"], record["x2"], record["y2"]))
            assert image.size == (x1 - x0, y1 - y0)
    result = CliRunner().invoke(cli, argv[:-2])
    assert result.exit_code != 0 and "(box: 'fitted' there, 'fitted-object' now)" in result.output


def test_an_outdir_of_square_boxes_refuses_tight_ones(runs, tmp_path):
    """Square OUTDIRs (of earlier versions too: no box in the settings) refuse the default, now fitted-object."""
    out = tmp_path / "o"
    crop(out, "--box", "square")
    argv = ["crop", str(DEMO), "-o", str(out), "--nets", ",".join(NETS), "--dry-run", "-q"]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code != 0 and "(box: 'square' (unset) there, 'fitted-object' now)" in result.output
    assert CliRunner().invoke(cli, [*argv, "--box", "square"]).exit_code == 0  # the same box resumes


def test_score_maps_are_float32_in_0_1_at_the_image_size_and_hold_the_tight_box(runs):
    tight, _ = runs["tight"]
    truth = json.loads((DEMO / "boxes.json").read_text())
    maps, boxes = [], []
    for key, record in sorted(tight.items()):
        assert record["map"] == f"maps/{key}.npy"
        heat = np.load(runs["tight_out"] / record["map"])
        assert heat.dtype == np.float32 and heat.shape == (record["height"], record["width"])
        assert heat.min() >= 0.0 and heat.max() == 1.0
        x, y, w, h = (round(v) for v in record["tight"])
        # the box is a region at or above the class maps' threshold (or, from the windows, holds the peak)
        assert heat[y : y + h, x : x + w].max() >= evidence.THRESHOLD - 1e-6
        maps.append(heat)
        boxes.append(truth[key.removeprefix("images/")])
    assert metrics.maxboxacc_v2(maps, boxes).maxboxacc > 0


def test_map_names_keep_the_image_name_and_add_the_category_when_there_are_several():
    from pathlib import PurePosixPath

    from fcnx.jobs.outdir.naming import map_name

    assert map_name(PurePosixPath("images/cat/x.png"), None) == PurePosixPath("maps/images/cat/x.png.npy")
    assert map_name(PurePosixPath("a/x.jpg"), "ice cream/2") == PurePosixPath("maps/a/x.jpg.ice_cream_2.npy")
    assert map_name(PurePosixPath("a/x.jpg"), None, 2) == PurePosixPath("maps/a/x.jpg-2.npy")


def test_score_maps_never_replace_a_file_fcnx_did_not_write(tmp_path, one_thread):
    out = tmp_path / "o"
    key = sorted(r.rel.as_posix() for r in dataset_items(DEMO))[0]
    mine = out / "maps" / f"{key}.npy"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"the user's own file")
    records, _ = crop(out, "--box", "tight", "--heatmaps-npy")
    assert mine.read_bytes() == b"the user's own file"
    assert records[key]["map"] == f"maps/{key}-2.npy" and (out / records[key]["map"]).is_file()
    again, _ = crop(out, "--box", "tight", "--heatmaps-npy")  # a rerun keeps the names the journal gave
    assert again[key]["map"] == f"maps/{key}-2.npy" and mine.read_bytes() == b"the user's own file"


def test_fitted_boxes_without_opencv_are_one_line_before_any_image(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "cv2", None)  # as if opencv-python-headless were not installed
    out = tmp_path / "o"
    argv = ["crop", str(DEMO), "-o", str(out), "--nets", ",".join(NETS), "--box", "fitted"]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == (
        "Error: --box: the fitted box needs OpenCV: pip install 'fcnx[fit]' (opencv-python-headless)"
    )
    assert not (out / "boxes.jsonl").exists()
