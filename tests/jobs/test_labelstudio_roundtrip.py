"""A real crop run exported to Label Studio, reviewed there (an export written as Label Studio writes it),
imported back and applied: boxes exact to the pixel on images of several sizes and EXIF orientations."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageOps
from tiny_backbones import color_checkpoint

from fcnx.cli import cli
from fcnx.io.decisions import read_decisions
from fcnx.method.geometry import pixel_box

#: stored size and EXIF orientation of each photo (6 and 8 turn it a quarter: upright it is height x width)
PHOTOS = {
    "plain": ((90, 60), 1),
    "right": ((90, 60), 6),
    "left": ((70, 110), 8),
    "upside": ((64, 64), 3),
    "wide": ((123, 57), 1),
}


def run(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


def write_photos(folder) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for name, ((width, height), orientation) in PHOTOS.items():
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        pixels[height // 4 : height // 2, width // 4 : width // 2] = (255, 0, 0)
        exif = Image.Exif()
        exif[0x0112] = orientation
        Image.fromarray(pixels).save(folder / f"{name}.png", exif=exif.tobytes())


@pytest.fixture
def reviewed(tmp_path, tiny_registry):
    photos = tmp_path / "photos"
    write_photos(photos / "dish")
    weights = color_checkpoint(tmp_path / "tiny0.safetensors", "tiny0")
    out = tmp_path / "out"
    result = run("crop", "--nets", "tiny0", "--weights", f"tiny0={weights}", photos, "-o", out, "-q", "--device", "cpu")
    assert result.exit_code == 0, result.output
    return photos, out


def test_label_studio_round_trip_is_exact_to_the_pixel(reviewed, tmp_path):
    _photos, out = reviewed
    records = {r["path"]: r for r in map(json.loads, (out / "boxes.jsonl").read_text().splitlines())}
    for path, r in records.items():
        (width, height), orientation = PHOTOS[path.rsplit("/", 1)[1][:-4]]
        assert (r["width"], r["height"]) == ((height, width) if orientation in (6, 8) else (width, height))

    result = run("export", out, "--format", "labelstudio", "--image-root", "http://h/img", "-o", tmp_path / "ls")
    assert result.exit_code == 0, result.output
    tasks = json.loads((tmp_path / "ls" / "tasks.json").read_text())
    assert '<RectangleLabels name="box" toName="image"' in (tmp_path / "ls" / "labeling-config.xml").read_text()
    assert len(tasks) == 5
    for task in tasks:
        r = records[task["data"]["fcnx_path"]]
        assert task["data"]["image"] == f"http://h/img/{r['file']}"
        [prediction] = task["predictions"]
        assert prediction["model_version"] == "fcnx 0.1.0: tiny0" and prediction["score"] == r["mean_confidence"]
        [box] = prediction["result"]
        assert (box["original_width"], box["original_height"]) == (r["width"], r["height"])
        assert box["value"]["x"] * r["width"] / 100 == pytest.approx(r["x"], abs=1e-9)
        assert box["value"]["height"] * r["height"] / 100 == pytest.approx(r["h"], abs=1e-9)

    # the reviewers' export: each pre-annotation submitted; on the turned photo a box redrawn; in any order
    adjusted = next(p for p in records if p.endswith("/right.png"))
    width, height = records[adjusted]["width"], records[adjusted]["height"]
    drawn = (7, 31, 40, 23)  # upright pixels
    export = []
    for k, task in enumerate(tasks):
        result = json.loads(json.dumps(task["predictions"][0]["result"]))
        if task["data"]["fcnx_path"] == adjusted:
            percent = (100 * drawn[0] / width, 100 * drawn[1] / height, 100 * drawn[2] / width, 100 * drawn[3] / height)
            result[0]["value"] |= dict(zip(("x", "y", "width", "height"), percent))
        data = dict(task["data"])
        if k == 0:
            del data["fcnx_path"]  # a task made by hand: matched by its image URL
        export.append({"id": 100 + k, "data": data, "annotations": [{"completed_by": 1, "result": result}]})
    export.append({"id": 999, "data": {"image": "http://h/img/dish/missing.png"}, "annotations": []})
    random.Random(0).shuffle(export)
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export))

    result = run("import-labelstudio", out, path)
    assert result.exit_code == 0, result.output
    assert "5 task(s) matched, 5 decision(s) read, 5 appended" in result.stdout
    assert "image 'http://h/img/dish/missing.png' is no image of the run; skipped" in result.stderr
    assert "0 appended" in run("import-labelstudio", out, path).stdout  # importing twice appends nothing
    decisions = {d.path: d for d in read_decisions(out / "review.jsonl").decisions}
    assert set(decisions) == set(records) and {d.action for d in decisions.values()} == {"accept"}
    assert decisions[adjusted].box == pytest.approx(drawn, abs=1e-6)
    for p, r in records.items():
        if p != adjusted:
            box = (r["x"], r["y"], r["w"], r["h"])
            assert decisions[p].box == pytest.approx(box, abs=1e-6)
            assert pixel_box(decisions[p].box, (r["height"], r["width"])) == pixel_box(box, (r["height"], r["width"]))

    clean = tmp_path / "clean"
    result = run("apply", out, "-o", clean, "-q")
    assert result.exit_code == 0, result.output
    for p, r in records.items():
        with Image.open(p) as original:
            upright = np.asarray(ImageOps.exif_transpose(original).convert("RGB"))
        x1, y1, x2, y2 = pixel_box(decisions[p].box, (r["height"], r["width"]))
        with Image.open(clean / "dish" / p.rsplit("/", 1)[1]) as written:
            assert np.array_equal(np.asarray(ImageOps.exif_transpose(written).convert("RGB")), upright[y1:y2, x1:x2])
    assert pixel_box(drawn, (height, width)) == (7, 31, 47, 54)

    # the export given to apply directly (no import) gives the same images
    (out / "review.jsonl").unlink()
    result = run("apply", out, "--labelstudio", path, "-o", tmp_path / "direct", "-q")
    assert result.exit_code == 0, result.output
    assert "is no image of the run; skipped" in result.stderr
    for written in (clean / "dish").iterdir():
        assert (tmp_path / "direct" / "dish" / written.name).read_bytes() == written.read_bytes()
