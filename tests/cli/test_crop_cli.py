"""``fcnx crop`` end to end on tiny backbones: outputs, resume, bad input, refusals, a killed run."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from image_corpus import BOMB_LIMIT, LOADABLE, NESTED, UNREADABLE, square, write_corpus
from PIL import Image
from tiny_backbones import color_checkpoint

from fcnx.cli import cli
from fcnx.engine.cropper import Cropper
from fcnx.method import geometry

TESTS = Path(__file__).parents[1]
NETS = ["tiny0", "tiny43", "tiny_m25"]


@pytest.fixture
def weights(tmp_path, tiny_registry):
    folder = tmp_path / "weights"
    return {name: color_checkpoint(folder / f"{name}.safetensors", name) for name in NETS}


def net_args(weights: dict[str, Path]) -> list[str]:
    args = ["--nets", ",".join(weights)]
    for name, path in weights.items():
        args += ["--weights", f"{name}={path}"]
    return args


def crop(weights, *args: str) -> object:
    """Run ``fcnx crop`` in-process with the tiny nets, small pyramids and no worker processes."""
    argv = ["crop", *net_args(weights), "--workers", "0", "--max-scale", "1.5", *map(str, args)]
    return CliRunner().invoke(cli, argv, catch_exceptions=False)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def journal(out: Path) -> list[dict]:
    text = (out / "boxes.jsonl").read_text(encoding="utf-8")
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_crop_writes_crops_in_the_same_format_boxes_and_table(tmp_path, weights):
    photos = tmp_path / "photos"
    originals = [square(photos / "a.jpg"), square(photos / "sub" / "b.png", top=10, left=10)]
    before = {p: digest(p) for p in originals}
    out = tmp_path / "out"
    result = crop(weights, "--category", "red", "--box", "square", photos, "-o", out)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and "img/s" in result.stderr
    assert {p: digest(p) for p in originals} == before  # originals untouched
    records = {r["file"]: r for r in journal(out)}
    assert sorted(records) == ["a.jpg", "sub/b.png"]
    library = Cropper.from_nets(NETS, weights, device="cpu", max_scale=1.5, categories=["red"], box="square")
    for rel, original in zip(["a.jpg", "sub/b.png"], originals):
        r = records[rel]
        (box,) = library.crop_image(original).boxes  # the library gives the very same box
        assert (r["x"], r["y"], r["w"], r["h"], r["cell"], r["level"]) == (
            box.x,
            box.y,
            box.w,
            box.h,
            list(box.cell),
            box.level,
        )
        assert r["category"] == "red" and r["found"] and r["votes"] == 3 and r["label"] is None
        assert r["net_scores"].keys() == set(NETS) and r["width"] == 160 and r["height"] == 120
        # the box from the cell with the paper's formulas: vertex 32 i / scale, edge 299 / scale, clipped
        (i, j), (sh, sw) = r["cell"], r["scaled_size"]
        assert r["x"] == pytest.approx(32 * j * 160 / sw) and r["y"] == pytest.approx(32 * i * 120 / sh)
        assert r["x2"] == pytest.approx(min(160, (32 * j + 299) * 160 / sw))
        assert r["y2"] == pytest.approx(min(120, (32 * i + 299) * 120 / sh))
        cropped = Image.open(out / r["crop"])
        x1, y1, x2, y2 = geometry.pixel_box((r["x"], r["y"], r["w"], r["h"]), (120, 160))
        assert cropped.size == (x2 - x1, y2 - y1) and cropped.format == Image.open(original).format
        if rel.endswith(".png"):  # lossless: exactly the original's pixels
            assert np.array_equal(np.asarray(cropped), np.asarray(Image.open(original))[y1:y2, x1:x2])
    with open(out / "boxes.csv", newline="", encoding="utf-8") as f:
        rows = {row["file"]: row for row in csv.DictReader(f)}
    assert rows["a.jpg"]["votes"] == "3" and float(rows["a.jpg"]["x"]) == records["a.jpg"]["x"]
    assert {"score:tiny0", "vote:tiny_m25", "cell_i", "crop"} <= set(rows["a.jpg"])
    assert not list(out.rglob("*.fcnx-tmp"))


def test_rerun_resumes_and_other_settings_are_refused(tmp_path, weights):
    photos = tmp_path / "photos"
    images = [square(photos / f"{k}.png", top=10 * k) for k in range(3)]
    out = tmp_path / "out"
    assert crop(weights, "--category", "red", photos, "-o", out).exit_code == 0
    first = journal(out)
    again = crop(weights, "--category", "red", photos, "-o", out)
    assert again.exit_code == 0 and "0 image(s) to do, 3 already done" in again.stderr
    assert journal(out) == first
    os.utime(images[1], ns=(time.time_ns(), time.time_ns() + 10**9))  # a changed source is redone, once
    redo = crop(weights, "--category", "red", photos, "-o", out)
    assert "1 image(s) to do, 2 already done" in redo.stderr
    records = journal(out)
    assert len(records) == 3 and len({r["path"] for r in records}) == 3
    (changed,) = [r for r in records if r["path"] == str(images[1])]
    assert changed["source_mtime_ns"] == images[1].stat().st_mtime_ns
    other = crop(weights, "--category", "red", "--selection", "votes-first", photos, "-o", out)
    assert other.exit_code == 2 and "other settings (selection: 'paper' there, 'votes-first' now)" in other.stderr


def test_bad_inputs_are_reported_one_line_each_and_the_run_goes_on(tmp_path, weights, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", BOMB_LIMIT)  # in-process run (--workers 0): applies to the loader
    photos = write_corpus(tmp_path / "photos")
    bad = {**UNREADABLE, "strip.png": "too elongated"}
    out = tmp_path / "out"
    result = crop(weights, "--category", "red", photos, "-o", out)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)  # no crash
    assert "Traceback" not in result.output
    for name, message in bad.items():
        assert f"error: {photos / name}: " in result.stderr and message in result.stderr
    assert f"{len(bad)} image(s) failed" in result.stderr
    assert sorted((out / "failures.txt").read_text().splitlines()) == sorted(
        line.removeprefix("error: ") for line in result.stderr.splitlines() if line.startswith("error: ")
    )
    done = {r["file"] for r in journal(out)}
    assert done == (set(LOADABLE) | set(NESTED)) - set(bad)
    for rel in done:
        assert (out / rel).is_file()
    assert Image.open(out / "cmyk.jpg").mode == "CMYK" and Image.open(out / "grey16.png").mode.startswith("I")
    # a rerun only retries the failures
    rerun = crop(weights, "--category", "red", photos, "-o", out)
    assert rerun.exit_code == 1 and f"{len(bad)} image(s) to do, {len(done)} already done" in rerun.stderr


def test_fail_fast_stops_at_the_first_failure(tmp_path, weights):
    photos = tmp_path / "photos"
    (photos / "a").mkdir(parents=True)
    (photos / "a" / "broken.png").write_bytes(b"nope")
    for k in range(3):
        square(photos / "b" / f"{k}.png")
    result = crop(weights, "--category", "red", "--fail-fast", photos, "-o", tmp_path / "out")
    assert result.exit_code == 1 and "stopped at the first failure" in result.stderr
    assert "1 image(s) failed" in result.stderr


def test_dry_run_writes_boxes_only_and_a_later_run_adds_crops(tmp_path, weights):
    photos = tmp_path / "photos"
    square(photos / "x.png")
    out = tmp_path / "out"
    assert crop(weights, "--category", "red", "--dry-run", photos, "-o", out).exit_code == 0
    assert [r["crop"] for r in journal(out)] == [None] and not (out / "x.png").exists()
    full = crop(weights, "--category", "red", photos, "-o", out)
    assert full.exit_code == 0 and "1 image(s) to do" in full.stderr
    assert (out / "x.png").is_file() and [r["crop"] for r in journal(out)] == ["x.png"]


def test_heatmaps_gallery_several_categories_and_quiet(tmp_path, weights):
    photos = tmp_path / "photos"
    square(photos / "x.png")
    out = tmp_path / "out"
    result = crop(
        weights, "--category", "red", "--category", "green", "--heatmaps", "--gallery", "--quiet", photos, "-o", out
    )
    assert result.exit_code == 0 and result.output == ""
    red, green = journal(out)
    assert (red["category"], red["found"], green["category"], green["found"]) == ("red", True, "green", False)
    assert (red["crop"], green["crop"]) == ("x.red.png", "x.green.png")
    assert (red["heatmap"], green["heatmap"]) == ("heatmaps/x.red_png.png", "heatmaps/x.green_png.png")
    picture = Image.open(out / red["heatmap"])
    assert picture.format == "PNG" and picture.size == (160, 120)
    # the overlay is warm inside the box and cool far from the square (the red square is at 90..130, 60..100)
    pixels = np.asarray(picture.convert("RGB")).astype(int)
    assert pixels[80, 110, 0] > pixels[20, 10, 0] + 40
    page = (out / "gallery.html").read_text()
    assert 'src="x.red.png"' in page and f'src="{Path(os.path.relpath(photos / "x.png", out)).as_posix()}"' in page
    assert "not found" in page  # green is flagged


def test_no_category_takes_the_top_class(tmp_path, weights):
    square(tmp_path / "x.png")
    result = crop(weights, tmp_path / "x.png", "-o", tmp_path / "out")
    assert result.exit_code == 0
    assert [r["category"] for r in journal(tmp_path / "out")] == ["red"]


def test_dataset_root_crops_each_image_for_its_label(tmp_path, weights):
    root = tmp_path / "food"
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "classes.txt").write_text("red\ngreen\n")
    (root / "meta" / "train.txt").write_text("red/1\ngreen/2\n")
    (root / "meta" / "test.txt").write_text("red/3\n")
    for rel in ["red/1", "green/2", "red/3"]:
        square(root / "images" / f"{rel}.jpg")
    out = tmp_path / "out"
    result = crop(weights, root, "-o", out)
    assert result.exit_code == 0, result.output
    records = {r["file"]: r for r in journal(out)}
    assert {k: (r["label"], r["category"], r["found"]) for k, r in records.items()} == {
        "images/red/1.jpg": ("red", "red", True),
        "images/green/2.jpg": ("green", "green", False),
        "images/red/3.jpg": ("red", "red", True),
    }
    assert (out / "images" / "green" / "2.jpg").is_file()
    assert (out / "meta" / "train.txt").read_text() == "red/1\ngreen/2\n"  # OUTDIR is a dataset root too
    assert "1 box(es) with found=false" in result.stderr
    (root / "meta" / "classes.txt").write_text("red\ngreen\npurple\n")
    (root / "meta" / "test.txt").write_text("purple/9\n")
    refused = crop(weights, root, "-o", tmp_path / "out2")
    assert refused.exit_code == 2 and "'purple'" in refused.stderr and "not classes of the nets" in refused.stderr
    (root / "meta" / "test.txt").write_text("../../../etc/passwd\n")
    traversal = crop(weights, root, "-o", tmp_path / "out3")
    assert traversal.exit_code == 2 and "test.txt:1: refusing the path" in traversal.stderr


def _digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): digest(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def test_in_place_writes_marked_crops_beside_the_originals_and_never_takes_them_as_inputs(tmp_path, weights):
    photos = tmp_path / "photos"
    for rel in ["x.png", "sub/y.jpg", "sub/deeper/z.png"]:
        square(photos / rel)
    originals = _digests(photos)
    args = ["--category", "red", "--heatmaps", "--gallery", "--in-place", photos, "-o", photos]
    result = crop(weights, *args)
    assert result.exit_code == 0, result.output
    assert {r["file"]: r["crop"] for r in journal(photos)} == {
        "x.png": "x.fcnx-crop.png",
        "sub/y.jpg": "sub/y.fcnx-crop.jpg",
        "sub/deeper/z.png": "sub/deeper/z.fcnx-crop.png",
    }
    after = _digests(photos)
    assert {k: after[k] for k in originals} == originals  # byte for byte
    for r in journal(photos):
        x1, y1, x2, y2 = geometry.pixel_box((r["x"], r["y"], r["w"], r["h"]), (120, 160))
        assert Image.open(photos / r["crop"]).size == (x2 - x1, y2 - y1)
    assert (photos / "heatmaps" / "sub" / "y_jpg.png").is_file() and (photos / "gallery.html").is_file()
    # a rerun finds nothing new: the crops and heatmaps are outputs, not inputs
    again = crop(weights, *args)
    assert again.exit_code == 0 and "0 image(s) to do, 3 already done, 6 output(s) of fcnx crop" in again.stderr
    assert _digests(photos) == after | {"gallery.html": after["gallery.html"]}
    # a run killed after writing a crop but before its record: the orphan crop is redone, not cropped itself
    lines = (photos / "boxes.jsonl").read_text().splitlines(keepends=True)
    (photos / "boxes.jsonl").write_text("".join(lines[:-1]))
    resumed = crop(weights, *args)
    assert resumed.exit_code == 0 and "1 image(s) to do, 2 already done" in resumed.stderr
    assert len(journal(photos)) == 3 and not list(photos.rglob("*.fcnx-crop.fcnx-crop*"))
    assert {k: digest(photos / k) for k in originals} == originals
    # other settings are refused as usual, and so is the overlap without --in-place
    other = crop(weights, "--category", "green", "--in-place", photos, "-o", photos)
    assert other.exit_code == 2 and "other settings (categories: ['red'] there, ['green'] now)" in other.stderr
    plain = crop(weights, "--category", "red", photos / "sub", "-o", photos / "sub")
    assert plain.exit_code == 2 and "overlaps the input" in plain.stderr


def test_in_place_into_a_dataset_root_or_a_folder_inside_the_input(tmp_path, weights):
    root = tmp_path / "food"
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "classes.txt").write_text("red\ngreen\n")
    (root / "meta" / "train.txt").write_text("red/1\ngreen/2\n")
    for rel in ["red/1", "green/2"]:
        square(root / "images" / f"{rel}.jpg")
    originals = _digests(root)
    assert crop(weights, "--in-place", root, "-o", root).exit_code == 0
    assert sorted(r["crop"] for r in journal(root)) == ["images/green/2.fcnx-crop.jpg", "images/red/1.fcnx-crop.jpg"]
    assert {k: digest(root / k) for k in originals} == originals  # meta lists untouched: they name the originals
    assert "0 image(s) to do, 2 already done" in crop(weights, "--in-place", root, "-o", root).stderr
    (root / "meta" / "train.txt").unlink()  # without lists the root is walked: the crops are still left out
    again = crop(weights, "--in-place", root, "-o", root)
    assert again.exit_code == 0 and "0 image(s) to do, 2 already done, 2 output(s)" in again.stderr
    # OUTDIR inside the input: its crops are left out of the next walk of the input
    photos = tmp_path / "photos"
    square(photos / "x.png")
    out = photos / "cropped"
    assert crop(weights, "--category", "red", "--in-place", photos, "-o", out).exit_code == 0
    assert [r["crop"] for r in journal(out)] == ["x.fcnx-crop.png"] and (out / "x.fcnx-crop.png").is_file()
    again = crop(weights, "--category", "red", "--in-place", photos, "-o", out)
    assert again.exit_code == 0 and "0 image(s) to do, 1 already done, 1 output(s)" in again.stderr


def test_in_place_refuses_to_replace_files_it_did_not_write(tmp_path, weights):
    photos = tmp_path / "photos"
    square(photos / "x.png")
    (photos / "boxes.csv").write_text("my own table\n")
    result = crop(weights, "--category", "red", "--in-place", photos, "-o", photos)
    assert result.exit_code == 2 and "already holds boxes.csv, not written by fcnx crop" in result.stderr
    assert (photos / "boxes.csv").read_text() == "my own table\n" and not (photos / "boxes.jsonl").exists()


def test_no_output_is_ever_written_at_the_path_of_an_input(tmp_path, weights):
    from fcnx.engine.cropper import Cropper
    from fcnx.engine.ensemble import load_ensemble
    from fcnx.io.discovery import discover
    from fcnx.jobs.outdir.outputs import CropOutputs

    photos = tmp_path / "photos"
    source = square(photos / "x.png")
    before = digest(source)
    ensemble = load_ensemble(["tiny0"], {"tiny0": str(weights["tiny0"])}, kernel=64, device="cpu")
    [item] = discover([photos])
    outputs = CropOutputs(photos, {}, net_names=["tiny0"], kernel=64, stride=32, expected_boxes=1, protected=[source])
    outputs.open()
    result = next(Cropper(ensemble, categories=["red"], workers=0).crop_items([item]))
    [outcome] = outputs.submit(result) or outputs.flush()
    outputs.finish([])
    assert outcome.records[0].crop == "x-2.png"  # the input's name is taken: a unique one
    assert digest(source) == before and (photos / "x-2.png").is_file()


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda p, w: ["--category", "rde", p / "in", "-o", p / "out"], "unknown category 'rde' (did you mean: red?)"),
        (lambda p, w: ["--category", "red", p / "in", "-o", p / "in" / "out"], "overlaps the input"),
        (lambda p, w: ["--category", "red", p / "in", "-o", p / "in"], "overlaps the input"),
        (
            lambda p, w: ["--category", "red", p / "in", "-o", p / "file.txt" / "out"],
            "file.txt: is a regular file, not a folder: choose another output folder",
        ),
        (lambda p, w: ["--category", "red", p / "missing", "-o", p / "out"], "no such file or folder"),
        (
            lambda p, w: ["--category", "red", "--step", "1", p / "in", "-o", p / "out"],
            "'--step': 1.0 is not in the range x>1",
        ),
        (lambda p, w: ["--kernel", "64", p / "in", "-o", p / "out"], "kernel 64 is too small for tiny43: its smallest"),
    ],
    ids=["category", "outdir-inside", "outdir-equal", "unwritable", "missing-input", "step", "kernel"],
)
def test_user_errors_are_one_line_with_exit_code_2(tmp_path, weights, make_args, message):
    square(tmp_path / "in" / "x.png")
    (tmp_path / "file.txt").write_text("a file, not a folder")
    result = crop(weights, *make_args(tmp_path, weights))
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert list((tmp_path / "in").iterdir()) == [tmp_path / "in" / "x.png"]


def test_nets_with_different_classes_or_bad_weight_options_are_refused(tmp_path, weights):
    square(tmp_path / "in" / "x.png")
    other = color_checkpoint(tmp_path / "other.safetensors", "tiny43", classes=["a", "b", "c", "d"])
    runner = CliRunner()
    base = ["crop", "--workers", "0", str(tmp_path / "in"), "-o", str(tmp_path / "out")]
    result = runner.invoke(
        cli, [*base, "--nets", "tiny0,tiny43", "--weights", f"tiny0={weights['tiny0']}", "--weights", f"tiny43={other}"]
    )
    assert result.exit_code == 2 and "class lists differ" in result.stderr
    result = runner.invoke(cli, [*base, "--nets", "tiny0", "--weights", str(weights["tiny0"])])
    assert result.exit_code == 2 and "expects NET=FILE" in result.stderr
    result = runner.invoke(cli, [*base, "--nets", "tiny9", "--weights", f"tiny9={weights['tiny0']}"])
    assert result.exit_code == 2 and "unknown backbone 'tiny9'" in result.stderr


def _subprocess_crop(args: list[str]) -> list[str]:
    code = (
        "import sys; sys.path.insert(0, sys.argv.pop(1)); import tiny_backbones; tiny_backbones.register(); "
        "from fcnx.cli import main; main()"
    )
    return [sys.executable, "-c", code, str(TESTS), "crop", *args]


def test_a_killed_run_resumes_with_nothing_lost_or_duplicated(tmp_path, weights):
    photos = tmp_path / "photos"
    for k in range(50):
        square(photos / f"{k // 10}" / f"{k}.png", top=k % 70, left=k % 110)
    out = tmp_path / "out"
    args = [
        *net_args(weights),
        "--category",
        "red",
        "--workers",
        "0",
        "--batch-size",
        "1",
        "--max-scale",
        "1.2",
        "--heatmaps",
        str(photos),
        "-o",
        str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(_subprocess_crop(args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    lines = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        journal_path = out / "boxes.jsonl"
        lines = journal_path.read_bytes().count(b"\n") if journal_path.exists() else 0
        if lines >= 8:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()
    assert 8 <= lines < 50
    resumed = subprocess.run(_subprocess_crop(args), capture_output=True, text=True, timeout=300, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert "already done" in resumed.stderr and "Traceback" not in resumed.stderr
    records = journal(out)
    assert len(records) == 50 and len({r["path"] for r in records}) == 50
    assert not list(out.rglob("*.fcnx-tmp"))
    for r in records:
        assert Image.open(out / r["crop"]).size[0] > 0 and Image.open(out / r["heatmap"]).format == "PNG"
    with open(out / "boxes.csv", newline="", encoding="utf-8") as f:
        assert len(list(csv.DictReader(f))) == 50


def test_the_journal_ends_in_input_order_whatever_order_batches_complete_in(tmp_path, weights):
    photos = tmp_path / "photos"
    sizes = [(120, 160), (130, 170), (130, 170), (120, 160), (140, 150)]  # batches of 2 by size complete out of order
    for k, size in enumerate(sizes):
        square(photos / f"{k}.png", size=size)
    out = tmp_path / "out"
    result = crop(weights, "--category", "red", "--batch-size", "2", "--dry-run", photos, "-o", out)
    assert result.exit_code == 0, result.output
    assert [r["file"] for r in journal(out)] == [f"{k}.png" for k in range(5)]
    with open(out / "boxes.csv", newline="", encoding="utf-8") as f:
        assert [row["file"] for row in csv.DictReader(f)] == [f"{k}.png" for k in range(5)]


def test_profile_prints_the_share_of_time_in_forward_passes(tmp_path, weights):
    square(tmp_path / "photos" / "x.png")
    result = crop(weights, "--category", "red", "--profile", tmp_path / "photos", "-o", tmp_path / "out")
    assert result.exit_code == 0
    (line,) = [line for line in result.stderr.splitlines() if "forward passes" in line]
    forward, wall, share = (
        float(v)
        for v in re.fullmatch(r"crop: forward passes ([\d.]+) s of ([\d.]+) s wall \(([\d.]+) %\)", line).groups()
    )
    assert forward <= wall + 0.05 and 0 < share <= 100  # rounded to 0.1 s: the share is the exact ratio
    (stages,) = [line for line in result.stderr.splitlines() if line.startswith("crop: stages ")]
    assert re.fullmatch(r"crop: stages nets [\d.]+ s, write [\d.]+ s, finish [\d.]+ s", stages)


def test_instances_give_one_record_crop_and_export_box_per_instance(tmp_path, weights):
    photos = tmp_path / "photos"
    photos.mkdir()
    image = np.full((120, 240, 3), 128, np.uint8)
    image[20:60, 20:60] = image[60:100, 170:210] = (230, 20, 20)  # two red squares far apart
    Image.fromarray(image).save(photos / "two.png")
    out = tmp_path / "out"
    result = crop(weights, "--category", "red", "--instances", "3", "--box", "tight", photos, "-o", out)
    assert result.exit_code == 0, result.output
    records = journal(out)
    assert [r["instance"] for r in records] == [1, 2]  # the third peak is one of these two
    assert [r["crop"] for r in records] == ["two.red.png", "two.red-2.png"]
    boxes = sorted((r["x"], r["y"], r["w"], r["h"]) for r in records)
    # each box lies on its own square (the colour nets find it to a cell of 8 pixels)
    assert 10 <= boxes[0][0] <= 30 and boxes[0][0] + boxes[0][2] <= 80 and boxes[0][1] + boxes[0][3] <= 80
    assert 150 <= boxes[1][0] <= 180 and boxes[1][1] >= 40
    assert all(r["mean_confidence"] > 0.5 for r in records)
    with open(out / "boxes.csv", newline="") as f:
        assert [row["instance"] for row in csv.DictReader(f)] == ["1", "2"]
    again = crop(weights, "--category", "red", "--instances", "3", "--box", "tight", photos, "-o", out)
    assert again.exit_code == 0 and len(journal(out)) == 2  # resumed: both boxes were done
    exported = CliRunner().invoke(cli, ["export", str(out), "--format", "coco", "-o", str(tmp_path / "coco")])
    assert exported.exit_code == 0, exported.output
    coco = json.loads((tmp_path / "coco" / "labels.json").read_text())
    assert len(coco["annotations"]) == 2
