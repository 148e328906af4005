"""`fcnx apply`: a real crop run of a Food-101 root (and of class folders) and reviewers' decisions written
as a new dataset, read back by `fcnx train`/`evaluate`, fcnx's dataset reader and torchvision's ImageFolder."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from tiny_backbones import color_checkpoint
from tiny_train_backbone import NAME, make_folders, make_food101

from fcnx.cli import cli
from fcnx.io.datasets import open_dataset
from fcnx.io.decisions import Decision, append_decision
from fcnx.io.decoding import open_upright
from fcnx.jobs.outdir.encoding import encode_crop


def run(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


def crop(source: Path, out: Path, weights: Path) -> Path:
    result = run("crop", "--nets", "tiny0", "--weights", f"tiny0={weights}", source, "-o", out, "-q", "--device", "cpu")
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Crop runs (colour net tiny0) of a Food-101 root (red/green/blue, 3 train + 1 test each) and of class folders."""
    import tiny_backbones

    from fcnx.backbones import plugins, registry

    plugin = tiny_backbones.register()
    base = tmp_path_factory.mktemp("apply")
    weights = color_checkpoint(base / "tiny0.safetensors", "tiny0")
    food = make_food101(base / "food", train=3, test=1)
    folders = make_folders(base / "folders", per_class=3, splits=("train", "test"))
    yield {
        "food": (food, crop(food, base / "food-out", weights)),
        "folders": (folders, crop(folders, base / "f-out", weights)),
    }
    plugins.pm.unregister(plugin)
    registry.refresh()


@pytest.fixture
def food_run(runs, tmp_path):
    """The Food-101 run's OUTDIR copied (each test writes its own review.jsonl)."""
    source, out = runs["food"]
    return source, Path(shutil.copytree(out, tmp_path / "out"))


def decide(out: Path, source: Path, rel: str, action: str, second: int, reviewer: str = "ana", **kw) -> None:
    path = str(source / "images" / rel)
    at = f"2026-12-07T15:00:{second:02d}+00:00"
    append_decision(out / "review.jsonl", Decision(path, action, reviewer, at, **kw))


def digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def records(out: Path) -> dict[str, dict]:
    return {r["file"]: r for r in map(json.loads, (out / "boxes.jsonl").read_text().splitlines())}


def test_each_decision_lands_in_the_cleaned_food101_root(food_run, tmp_path):
    source, out = food_run
    decide(out, source, "red/0.jpg", "accept", 1)
    decide(out, source, "red/1.jpg", "accept", 2, box=(5.0, 6.0, 30.0, 20.0))
    decide(out, source, "red/2.jpg", "reject", 3, reason="wrong_label")
    decide(out, source, "green/0.jpg", "reject", 4, reason="crop")
    decide(out, source, "green/1.jpg", "relabel", 5, label="blue")  # blue/1.jpg is taken: blue/1-green.jpg
    decide(out, source, "green/2.jpg", "relabel", 6, label="yellow")  # a new class
    decide(out, source, "green/2.jpg", "accept", 7, box=(1.0, 1.0, 40.0, 40.0))
    decide(out, source, "gone/9.jpg", "accept", 8)
    clean = tmp_path / "clean"
    result = run("apply", out, "-o", clean, "-q")
    assert result.exit_code == 0, result.output
    assert "apply: 11 of 12 image(s) in 4 classes written" in result.stdout
    assert "1 decision(s) for images the dataset does not have, skipped" in result.stderr
    assert "1 class(es) have no image in meta/test.txt: yellow" in result.stderr

    images = sorted(p.relative_to(clean / "images").as_posix() for p in (clean / "images").rglob("*.jpg"))
    assert images == [
        "blue/0.jpg", "blue/1-green.jpg", "blue/1.jpg", "blue/2.jpg", "blue/3.jpg", "green/0.jpg", "green/3.jpg",
        "red/0.jpg", "red/1.jpg", "red/3.jpg", "yellow/2.jpg",
    ]  # fmt: skip
    boxes = records(out)
    src = source / "images"
    got = {name: (clean / "images" / name).read_bytes() for name in images}
    assert got["red/0.jpg"] == (out / boxes["images/red/0.jpg"]["crop"]).read_bytes()  # accepted: the run's crop
    assert got["red/3.jpg"] == (out / boxes["images/red/3.jpg"]["crop"]).read_bytes()  # unreviewed: --unreviewed crop
    assert got["red/1.jpg"] == encode_crop(open_upright(src / "red/1.jpg"), (5, 6, 35, 26))  # the reviewer's box
    assert got["yellow/2.jpg"] == encode_crop(open_upright(src / "green/2.jpg"), (1, 1, 41, 41))
    assert got["green/0.jpg"] == (src / "green/0.jpg").read_bytes()  # crop rejected: the original
    assert got["blue/1-green.jpg"] == (src / "green/1.jpg").read_bytes()  # relabelled, no box: the original
    meta = clean / "meta"
    assert (meta / "classes.txt").read_text() == "red\ngreen\nblue\nyellow\n"
    assert (meta / "train.txt").read_text().split() == [
        "red/0", "red/1", "green/0", "blue/1-green", "yellow/2", "blue/0", "blue/1", "blue/2",
    ]  # fmt: skip
    assert (meta / "test.txt").read_text().split() == ["red/3", "green/3", "blue/3"]
    assert (meta / "excluded.txt").read_text() == "red/2\twrong_label\n"
    summary = json.loads((clean / "apply-summary.json").read_text())
    assert summary["outcomes"] == {
        "accepted": 1, "adjusted": 1, "relabelled": 2, "original": 1, "unreviewed": 6, "wrong_label": 1,
    }  # fmt: skip
    assert summary["classes"]["red"] == {"accepted": 1, "adjusted": 1, "unreviewed": 1, "wrong_label": 1}
    assert (summary["images"], summary["written"], summary["layout"]) == (12, 11, "food101")

    # fcnx reads it back as a Food-101 root, torchvision as class folders
    train = open_dataset(clean, "train")
    assert train.classes == ["red", "green", "blue", "yellow"] and len(train.items) == 8
    from torchvision.datasets import ImageFolder

    folder = ImageFolder(str(clean / "images"))
    counts = {name: folder.targets.count(k) for name, k in folder.class_to_idx.items()}
    assert counts == {"blue": 5, "green": 2, "red": 3, "yellow": 1}

    # a rerun writes the same bytes; changed decisions replace exactly what changed
    before = digest(clean)
    assert run("apply", out, "-o", clean, "-q").exit_code == 0
    assert digest(clean) == before
    decide(out, source, "red/2.jpg", "undo", 10)
    decide(out, source, "green/1.jpg", "undo", 11)
    assert run("apply", out, "-o", clean, "-q").exit_code == 0
    after = digest(clean)
    assert "images/blue/1-green.jpg" not in after and after["images/green/1.jpg"] != before.get("images/green/1.jpg")
    assert (clean / "images/red/2.jpg").read_bytes() == (out / boxes["images/red/2.jpg"]["crop"]).read_bytes()
    assert (meta / "excluded.txt").read_text() == ""
    assert source.joinpath("meta/train.txt").read_text().split()[:3] == ["red/0", "red/1", "red/2"]  # source untouched


def test_unreviewed_original_and_drop(food_run, tmp_path):
    source, out = food_run
    result = run("apply", out, "--unreviewed", "original", "-o", tmp_path / "orig", "-q")
    assert result.exit_code == 0, result.output
    for path in (source / "images").rglob("*.jpg"):
        assert (tmp_path / "orig" / "images" / path.relative_to(source / "images")).read_bytes() == path.read_bytes()
    result = run("apply", out, "--unreviewed", "drop", "-o", tmp_path / "none", "-q")
    assert result.exit_code == 2 and "no image would be left in the cleaned dataset" in result.output
    assert not (tmp_path / "none").exists()
    decide(out, source, "blue/3.jpg", "accept", 1)
    decide(out, source, "red/0.jpg", "accept", 1)
    result = run("apply", out, "--unreviewed", "drop", "-o", tmp_path / "two", "-q")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "two/meta/train.txt").read_text() == "red/0\n"
    assert (tmp_path / "two/meta/test.txt").read_text() == "blue/3\n"
    assert (tmp_path / "two/meta/classes.txt").read_text() == "red\nblue\n"
    excluded = (tmp_path / "two/meta/excluded.txt").read_text().splitlines()
    assert len(excluded) == 10 and all(line.endswith("\tunreviewed") for line in excluded)


def test_two_reviewers_merge_latest_wins_disagreements_listed(food_run, tmp_path):
    source, out = food_run
    ana, bo = tmp_path / "ana.jsonl", tmp_path / "bo.jsonl"
    decide(tmp_path, source, "red/0.jpg", "accept", 1)
    (tmp_path / "review.jsonl").rename(ana)
    decide(tmp_path, source, "red/0.jpg", "reject", 2, reviewer="bo", reason="unusable")
    (tmp_path / "review.jsonl").rename(bo)
    result = run("apply", out, "--decisions", ana, "--decisions", bo, "-o", tmp_path / "clean", "-q")
    assert result.exit_code == 0, result.output
    assert f"reviewers disagree on {source / 'images/red/0.jpg'}: ana: accept; bo: reject (unusable)" in result.stderr
    assert (tmp_path / "clean/meta/excluded.txt").read_text() == "red/0\tunusable\n"
    summary = json.loads((tmp_path / "clean/apply-summary.json").read_text())
    assert summary["disagreements"] == {str(source / "images/red/0.jpg"): {"ana": "accept", "bo": "reject (unusable)"}}


def test_refusals_are_one_line_and_touch_nothing(food_run, tmp_path):
    source, out = food_run
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    result = run("apply", out, "-o", mine)
    assert result.exit_code == 2 and "holds files that fcnx apply did not write" in result.output
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    decide(out, source, "red/0.jpg", "reject", 1, reason="wrong_label")
    assert run("apply", out, "-o", tmp_path / "ours", "-q").exit_code == 0
    (tmp_path / "ours/images/red/0.jpg").write_text("a user's file")  # a name apply did not write there
    decide(out, source, "red/0.jpg", "undo", 2)
    result = run("apply", out, "-o", tmp_path / "ours", "-q")
    assert result.exit_code == 2 and "holds images/red/0.jpg, not written by fcnx apply" in result.output
    assert (tmp_path / "ours/images/red/0.jpg").read_text() == "a user's file"
    (out / "review.jsonl").unlink()
    result = run("apply", out, "-o", source / "clean")
    assert result.exit_code == 2 and "overlaps the input" in result.output
    assert not (source / "clean").exists()
    result = run("apply", source, "-o", tmp_path / "x")
    assert result.exit_code == 2 and "not an output folder of fcnx crop (no boxes.jsonl)" in result.output
    with (out / "review.jsonl").open("w") as f:
        f.write(
            '{"v": 1, "path": "x", "action": "explode", "reviewer": "a", "at": "2026-12-07T15:00:00"}\n{"v": 1, "pa'
        )
    result = run("apply", out, "-o", tmp_path / "y", "-q")
    assert result.exit_code == 0, result.output
    assert f"{out / 'review.jsonl'}:1: not a decision (action 'explode' is not one of" in result.stderr
    assert "the last line is cut short (a killed review?), dropped" in result.stderr


def test_class_folders_give_class_folders_that_train_and_evaluate(runs, tmp_path, tiny_train):
    source, ran = runs["folders"]
    out = Path(shutil.copytree(ran, tmp_path / "out"))
    append_decision(
        out / "review.jsonl",
        Decision(str(source / "train/red/0.png"), "reject", "ana", "2026-12-07T15:00:00+00:00", reason="not_category"),
    )
    clean = tmp_path / "clean"
    result = run("apply", out, "-o", clean, "-q")
    assert result.exit_code == 0, result.output
    assert (clean / "excluded.txt").read_text() == "train/red/0.png\tnot_category\n"
    from torchvision.datasets import ImageFolder

    for split, red in (("train", 2), ("test", 3)):
        folder = ImageFolder(str(clean / split))
        assert {n: folder.targets.count(k) for n, k in folder.class_to_idx.items()} == {
            "blue": 3,
            "green": 3,
            "red": red,
        }
    trained = tmp_path / "run"
    fast = ["--size", "64", "--weights", "none", "--batch-size", "4", "--workers", "0", "--epochs", "1", "-q"]
    result = run("train", "--net", NAME, "--data", clean, "-o", trained, *fast)
    assert result.exit_code == 0, result.output
    result = run(
        "evaluate", "--nets", NAME, "--weights", f"{NAME}={trained / 'best.safetensors'}", "--kernel", "64",
        "--data", clean, "--split", "test", "-q", "-o", tmp_path / "ev",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    [row] = json.loads((tmp_path / "ev" / "evaluation.json").read_text())["rows"]
    assert row["images"] == 9
