"""`fcnx evaluate` and `fcnx suspects` on a dataset the test builds: coloured squares on grey.

With the colour nets of tests/tiny_backbones.py the outcome is known by construction: on a
whole 400x400 image a 100 px square is too small against the grey, so every net says `none`;
on a crop around the square it says the square's colour. One image is planted with a wrong
label (a red square labelled `blue`): no net ever finds blue in it.
"""

from __future__ import annotations

import csv
import json
import random

import numpy as np
import pytest
from click.testing import CliRunner
from image_corpus import BOMB_LIMIT, LOADABLE, UNREADABLE, square, write_corpus
from PIL import Image
from tiny_backbones import color_checkpoint

from fcnx.cli import cli
from fcnx.jobs.scoring import cut_box, read_boxes

COLORS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}
PER_CLASS = 3


def make_dataset(root):
    rng = random.Random(0)
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "classes.txt").write_text("red\ngreen\nblue\n")
    lines = []
    for label, color in [(c, COLORS[c]) for c in COLORS for _ in range(PER_CLASS)] + [("blue", COLORS["red"])]:
        pixels = np.full((400, 400, 3), 128, np.uint8)
        x, y = rng.randrange(0, 300), rng.randrange(0, 300)
        pixels[y : y + 100, x : x + 100] = color
        name = f"{label}/{len(lines)}"
        (root / "images" / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(root / "images" / f"{name}.png")
        lines.append(name)
    (root / "meta" / "test.txt").write_text("\n".join(name + ".png" for name in lines) + "\n")
    return len(lines)


@pytest.fixture
def setup(tmp_path, tiny_registry):
    weights = {name: color_checkpoint(tmp_path / f"{name}.safetensors", name) for name in ("tiny0", "tiny43")}
    args = ["--nets", "tiny0,tiny43"] + [a for n, p in weights.items() for a in ("--weights", f"{n}={p}")]
    root = tmp_path / "data"
    return args, root, make_dataset(root)


def test_cut_box_by_hand():
    pixels = np.arange(5 * 6 * 3, dtype=np.uint8).reshape(5, 6, 3)
    assert cut_box(pixels, (1.5, 0.2, 2.0, 3.1)).shape == (3, 2, 3)  # rounded half up: x 2..4, y 0..3
    assert cut_box(pixels, (10, 10, 5, 5)).shape == (1, 1, 3)


def test_evaluate_table_iv_on_originals_and_crops(tmp_path, setup):
    args, root, n = setup
    result = CliRunner().invoke(
        cli, ["evaluate", *args, "--data", str(root), "--crop", "-q", "-o", str(tmp_path / "ev")]
    )
    assert result.exit_code == 0, result.output
    rows = {r["model"]: r for r in json.loads((tmp_path / "ev" / "evaluation.json").read_text())["rows"]}
    assert set(rows) == {"tiny0", "tiny43", "ensemble"}
    for row in rows.values():
        assert row["images"] == n
        assert row["original_top1"] == 0.0  # the grey wins: 'none'
        assert row["cropped_top1"] == pytest.approx((n - 1) / n)  # all but the planted image
        assert row["original_top5"] == row["cropped_top5"] == 1.0  # four classes
        assert row["delta_top1"] == pytest.approx((n - 1) / n)
    table = list(csv.DictReader((tmp_path / "ev" / "evaluation.csv").open()))
    assert [r["model"] for r in table] == ["tiny0", "tiny43", "ensemble"]
    assert "cropped top-1" in result.stdout and "+90.00" in result.stdout


def test_evaluate_reads_boxes_of_fcnx_crop(tmp_path, setup):
    args, root, n = setup
    crop = CliRunner().invoke(
        cli, ["crop", *args, str(root), "-o", str(tmp_path / "cropped"), "--dry-run", "-q", "--split", "test"]
    )
    assert crop.exit_code == 0, crop.output
    boxes = read_boxes(tmp_path / "cropped" / "boxes.jsonl")
    assert len(boxes) == n
    result = CliRunner().invoke(
        cli, ["evaluate", *args, "--data", str(root), "-q", "--crops", str(tmp_path / "cropped" / "boxes.jsonl")]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1].split()[:7] == [
        "tiny0",
        str(n),
        "0.00%",
        "100.00%",
        "90.00%",
        "100.00%",
        "+90.00",
    ]


def test_evaluate_bad_inputs(tmp_path, setup):
    args, root, n = setup
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"path": "x.png", "x": 1}\n')
    result = CliRunner().invoke(cli, ["evaluate", *args, "--data", str(root), "--crops", str(bad)])
    assert result.exit_code == 2 and "bad.jsonl: line 1: not a box record (KeyError" in result.stderr
    elsewhere = tmp_path / "elsewhere.jsonl"
    elsewhere.write_text('{"path": "/nowhere/x.png", "x": 1, "y": 1, "w": 5, "h": 5}\n')
    result = CliRunner().invoke(cli, ["evaluate", *args, "--data", str(root), "--crops", str(elsewhere)])
    assert (
        result.exit_code == 2
        and f"elsewhere.jsonl: none of the {n} images of the test split has a box" in result.stderr
    )
    result = CliRunner().invoke(cli, ["evaluate", *args, "--data", str(tmp_path)])
    assert result.exit_code == 2 and "not a dataset root, but data/ inside it is one" in result.stderr
    result = CliRunner().invoke(cli, ["evaluate", *args, "--data", str(root), "-o", str(root / "out")])
    assert result.exit_code == 2 and "overlaps the input" in result.stderr


def test_evaluate_goes_through_the_bad_input_corpus_one_line_each_and_exits_1(tmp_path, setup, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", BOMB_LIMIT)
    args = [*setup[0], "--kernel", "107"]  # small images, a small kernel: a fraction of a second per run
    root = tmp_path / "corpus"
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "classes.txt").write_text("red\ngreen\nblue\n")
    for name in ("green", "blue"):
        square(root / "images" / name / "0.png")
    red = write_corpus(root / "images" / "red", nested=False)
    (red / "dir.jpg").mkdir()
    names = ["green/0.png", "blue/0.png", *(f"red/{name}" for name in [*LOADABLE, *UNREADABLE, "dir.jpg", "gone.png"])]
    (root / "meta" / "test.txt").write_text("".join(f"{name}\n" for name in names))
    n = 2
    bad = {**UNREADABLE, "dir.jpg": "is a folder, not an image", "gone.png": "listed in meta but no such file"}

    def scored(result, failed: dict[str, str]) -> int:
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output  # no crash
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == len(failed), "\n".join(errors)
        for name, message in failed.items():
            assert any(line.startswith(f"error: {red / name}: ") and message in line for line in errors), (name, errors)
        assert f"evaluate: {len(failed)} image(s) skipped" in result.stderr
        return int(result.stdout.splitlines()[1].split()[1])

    def evaluate(*extra):
        return CliRunner().invoke(cli, ["evaluate", *args, "--data", str(root), "-q", *map(str, extra)])

    # originals only: every loadable file is scored, the strip too
    assert scored(evaluate("-o", tmp_path / "ev"), bad) == n + len(LOADABLE)
    assert len(json.loads((tmp_path / "ev" / "evaluation.json").read_text())["skipped"]) == len(bad)
    # --crop: the strip is too elongated to crop, so it is left out on both sides
    assert scored(evaluate("--crop"), {**bad, "strip.png": "too elongated"}) == n + len(LOADABLE) - 1
    # boxes of fcnx crop: the images it could not crop have no box
    crop = CliRunner().invoke(
        cli,
        [
            "crop",
            *args,
            str(root),
            "-o",
            str(tmp_path / "cropped"),
            "--dry-run",
            "-q",
            "--split",
            "test",
            "--workers",
            "0",
        ],
    )
    assert crop.exit_code == 1 and len(read_boxes(tmp_path / "cropped" / "boxes.jsonl")) == n + len(LOADABLE) - 1
    result = evaluate("--crops", tmp_path / "cropped" / "boxes.jsonl")
    assert scored(result, {**bad, "strip.png": "no box for this image"}) == n + len(LOADABLE) - 1


def test_suspects_finds_the_planted_label(tmp_path, setup):
    args, root, n = setup
    (root / "images" / "red" / "broken.png").write_bytes(b"not an image")
    with (root / "meta" / "test.txt").open("a") as f:
        f.write("red/broken.png\n")
    out = tmp_path / "review"
    result = CliRunner().invoke(cli, ["suspects", *args, "--data", str(root), "-o", str(out), "-q"])
    assert result.exit_code == 1  # one unreadable image, reported
    assert f"error: {root / 'images' / 'red' / 'broken.png'}: " in result.stderr
    assert "1 unreadable image(s) skipped" in result.stderr
    data = json.loads((out / "suspects.json").read_text())
    assert data["images"] == n + 1
    [suspect] = data["suspects"]
    assert suspect["path"].endswith(f"blue/{n - 1}.png")
    assert (suspect["label"], suspect["other_category"], suspect["other_votes"]) == ("blue", "red", 2)
    assert "data:image/jpeg;base64," in (out / "suspects.html").read_text()
    assert list(csv.DictReader((out / "suspects.csv").open()))[0]["other_category"] == "red"


def test_the_library_jobs_write_what_the_commands_write(tmp_path, setup):
    """run_evaluate / run_suspects (the jobs the commands call) give the same tables as the CLI."""
    from fcnx import EvaluateOptions, SuspectsOptions, run_evaluate, run_suspects

    args, root, n = setup
    weights = dict(a.split("=", 1) for a in args[3::2])
    CliRunner().invoke(cli, ["evaluate", *args, "--data", str(root), "--crop", "-q", "-o", str(tmp_path / "c")])
    cli_json = json.loads((tmp_path / "c" / "evaluation.json").read_text())
    kernel = cli_json["kernel"]
    job = run_evaluate(root, EvaluateOptions(["tiny0", "tiny43"], weights, kernel, crop=True), tmp_path / "lib")
    assert len(job.items) == n and job.warnings == []
    result = job.run()
    assert result.rows()[0]["cropped_top1"] == pytest.approx((n - 1) / n)
    lib_json = json.loads((tmp_path / "lib" / "evaluation.json").read_text())
    assert lib_json["rows"] == cli_json["rows"] and lib_json["kernel"] == cli_json["kernel"]

    CliRunner().invoke(cli, ["suspects", *args, "--data", str(root), "-q", "-o", str(tmp_path / "sc")])
    found = run_suspects(root, SuspectsOptions(["tiny0", "tiny43"], weights, kernel), tmp_path / "sl").run()
    assert [s.path.name for s in found] == [f"{n - 1}.png"]
    assert (tmp_path / "sl" / "suspects.csv").read_text() == (tmp_path / "sc" / "suspects.csv").read_text()


def test_the_jobs_refuse_contradictory_options_before_loading_anything(tmp_path):
    from fcnx import EvaluateOptions, SuspectsOptions, run_evaluate, run_suspects
    from fcnx.errors import UsageError

    with pytest.raises(UsageError, match="--crops FILE or --crop, not both"):
        run_evaluate(tmp_path, EvaluateOptions(["tiny0"], crops=tmp_path / "b.jsonl", crop=True))
    with pytest.raises(UsageError, match="--skip-missing goes with --crops"):
        run_evaluate(tmp_path, EvaluateOptions(["tiny0"], skip_missing=True))
    with pytest.raises(UsageError, match="unknown mislabel signal 'loud'"):
        run_suspects(tmp_path, SuspectsOptions(["tiny0"], signal="loud"), tmp_path / "out")


@pytest.mark.parametrize("signal", ["paper", "graded"])
def test_label_issues_csv_scores_every_image_as_cleanlab_does(tmp_path, setup, signal):
    """label_issues.csv: a row per scored image (not only the flagged), cleanlab's columns, label_score =
    the label's best summed probability over the best class's (1 where the label is the top class)."""
    from fcnx import SuspectsOptions, run_suspects

    args, root, n = setup
    weights = dict(a.split("=", 1) for a in args[3::2])
    job = run_suspects(root, SuspectsOptions(["tiny0", "tiny43"], weights, 299, signal=signal), tmp_path / "s")
    job.run()
    with (tmp_path / "s" / "label_issues.csv").open() as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == ["path", "is_label_issue", "label_score", "given_label", "predicted_label"]
    assert [r["path"] for r in rows] == [str(item.path) for item in job.items] and len(rows) == n
    for row, item in zip(rows, job.items):
        levels, maps = job.cropper.label_levels(item, item.label)[2:4]
        label_best = max(float(level.summed().max()) for level in levels)
        best = max(float(values.max()) for values, _ in maps)
        expected = 1.0 if best - label_best <= 1e-6 else label_best / best
        assert float(row["label_score"]) == pytest.approx(expected, abs=1e-12)
        assert 0.0 <= float(row["label_score"]) <= 1.0 and row["given_label"] == item.label
    flagged = [r for r in rows if r["is_label_issue"] == "True"]
    assert [r["path"] for r in flagged] == [str(job.items[-1].path)]  # the planted red square labelled blue
    assert flagged[0]["given_label"] == "blue" and flagged[0]["predicted_label"] == "red"
    assert float(flagged[0]["label_score"]) == min(float(r["label_score"]) for r in rows) < 0.5
