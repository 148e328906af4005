"""`fcnx train --nets`: the fcnx-tiny nets trained one after another, resumable per member, into an
ensemble.json that `fcnx crop/evaluate --ensemble` accept."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from tiny_train_backbone import COLORS, make_food101

from fcnx.backbones import checkpoint
from fcnx.cli import cli
from fcnx.errors import UsageError
from fcnx.training import manifest, trainer

NETS = "tiny_vgg,tiny_resnet"
FAST = ["--size", "56", "--weights", "none", "--schedule", "all", "--epochs", "2", "--batch-size", "8"]
FAST += ["--workers", "0", "--val-fraction", "0.25", "--no-augment", "-q"]


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture
def food(tmp_path):
    return make_food101(tmp_path / "food", train=8, test=2)


def test_ensemble_trains_each_member_and_crop_and_evaluate_accept_it(tmp_path, food, one_thread):
    runs = tmp_path / "runs"
    result = run("train", "--nets", NETS, "--data", food, "-o", runs, *FAST)
    assert result.exit_code == 0, result.output
    data = json.loads((runs / "ensemble.json").read_text())
    assert data["complete"] and data["kernel"] == 56 and data["classes"] == list(COLORS)
    assert [m["net"] for m in data["members"]] == ["tiny_vgg", "tiny_resnet"]
    for member in data["members"]:
        best = runs / member["checkpoint"]
        meta = checkpoint.read_meta(best)
        assert (meta.arch, meta.input_size, meta.classes) == (member["net"], 56, list(COLORS))
        rows = (runs / member["net"] / "metrics.csv").read_text().splitlines()
        assert len(rows) == 3  # header and 2 epochs
        assert member["val_top1"] == trainer.read_resume(runs / member["net"])[1].best_top1
        assert meta.extra["training"]["val_top1"] == member["val_top1"]
    assert 0 <= data["val_top1"] <= 1 and f"ensemble validation top-1 {data['val_top1']:.2%}" in result.output

    evaluated = run("evaluate", "--ensemble", runs / "ensemble.json", "--data", food, "--split", "test", "-q")
    by_hand = run(
        "evaluate",
        "--nets",
        NETS,
        *(a for m in data["members"] for a in ("--weights", f"{m['net']}={runs / m['checkpoint']}")),
        "--data",
        food,
        "--split",
        "test",
        "-q",
    )
    assert evaluated.exit_code == 0 and evaluated.stdout == by_hand.stdout, evaluated.output
    assert "ensemble" in evaluated.stdout
    cropped = run("crop", "--ensemble", runs, food / "images" / "red", "-o", tmp_path / "crops", "--device", "cpu")
    assert cropped.exit_code == 0, cropped.output
    assert "at kernel 56" in cropped.output and (tmp_path / "crops" / "boxes.jsonl").is_file()

    both = run("crop", "--ensemble", runs, "--nets", "tiny_vgg", food, "-o", tmp_path / "x")
    assert both.exit_code == 2 and "leave out --nets and --weights" in both.output


def test_an_interrupted_ensemble_resumes_the_member_it_stopped_in(tmp_path, food, one_thread, monkeypatch):
    runs = tmp_path / "runs"
    original = trainer.train

    def stop_in_second(config, outdir, **kwargs):
        if config.net == "tiny_resnet":
            kwargs["on_epoch"] = lambda progress: (_ for _ in ()).throw(KeyboardInterrupt)
        return original(config, outdir, **kwargs)

    monkeypatch.setattr(trainer, "train", stop_in_second)
    result = run("train", "--nets", NETS, "--data", food, "-o", runs, *FAST)
    assert result.exit_code == 130 and "continue with: fcnx train --resume" in result.output
    saved = manifest.read_manifest(runs)
    assert not saved.complete and [m.finished for m in saved.members] == [True, False]
    first = (runs / "tiny_vgg" / "best.safetensors").read_bytes()
    refused = run("evaluate", "--ensemble", runs, "--data", food, "--split", "test")
    assert refused.exit_code == 2 and "has not finished" in refused.output
    again = run("train", "--nets", NETS, "--data", food, "-o", runs, *FAST)
    assert again.exit_code == 2 and "--resume" in again.output

    monkeypatch.setattr(trainer, "train", original)
    changed = run("train", "--resume", "-o", runs, "--epochs", "3")
    assert changed.exit_code == 2 and "--epochs was 2, not 3" in changed.output
    resumed = run("train", "--resume", "-o", runs, "--workers", "0", "-q")
    assert resumed.exit_code == 0, resumed.output
    assert (runs / "tiny_vgg" / "best.safetensors").read_bytes() == first  # the finished member is kept
    rows = (runs / "tiny_resnet" / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2"]  # the stopped member went on from epoch 2
    assert manifest.read_manifest(runs).complete


def test_bad_ensemble_requests_are_one_line_errors(tmp_path, food):
    for args, message in (
        (["--nets", "tiny_vgg,tiny_vgg"], "names a backbone twice"),
        (["--nets", "tiny_vgg,nope"], "nope"),
        (["--nets", "tiny_vgg", "--net", "tiny_resnet"], "not both"),
    ):
        result = run("train", *args, "--data", food, "-o", tmp_path / "r", *FAST)
        assert result.exit_code == 2 and message in result.output, result.output
        assert not (tmp_path / "r").exists()
    not_data = run("train", "--nets", NETS, "--data", food / "meta", "-o", tmp_path / "r", *FAST)
    assert not_data.exit_code == 2 and not (tmp_path / "r").exists()
    # refused by the first member (its weights), after ensemble.json was written: nothing is left either
    fast = [a if a != "none" else str(tmp_path / "absent.safetensors") for a in FAST]
    refused = run("train", "--nets", NETS, "--data", food, "-o", tmp_path / "r", *fast)
    assert refused.exit_code != 0 and "absent.safetensors" in refused.output, refused.output
    assert not (tmp_path / "r").exists()
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(UsageError, match="not an ensemble file"):
        manifest.ensemble_weights(tmp_path / "bad.json")


def test_the_ensembles_validation_top1_is_its_members_for_one_net_on_crops(tmp_path, food, one_thread):
    """Validation scores what `fcnx evaluate` scores, on the same held-out crops: for one net, the same number."""
    from fcnx.io import datasets

    items = datasets.open_dataset(food, "train").items
    lines = [
        json.dumps({"path": str(item.path), "category": item.label, "x": 4 + k % 7, "y": 3, "w": 50, "h": 44.5})
        for k, item in enumerate(items)
        if k != 2  # one image without a box: skipped, so the held-out images are chosen among the others
    ]
    (tmp_path / "boxes.jsonl").write_text("\n".join(lines) + "\n")
    runs = tmp_path / "runs"
    result = run("train", "--nets", "tiny_vgg", "--data", food, "-o", runs, "--crops", tmp_path / "boxes.jsonl", *FAST)
    assert result.exit_code == 1 and "no box in" in result.output, result.output
    data = manifest.read_manifest(runs)
    assert data.complete and data.val_top1 == data.members[0].val_top1
