"""`fcnx train --folds K` and `fcnx suspects --folds`: fold models that each leave one fold of the split out,
and suspects scored by the model that did not see each image (out of sample)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from tiny_backbones import color_checkpoint
from tiny_train_backbone import COLORS, make_food101

from fcnx.backbones import checkpoint
from fcnx.cli import cli
from fcnx.errors import UsageError
from fcnx.io import datasets
from fcnx.io.discovery import ImageItem
from fcnx.io.folds import FOLDS, Fold, Folds, assign_folds, read_folds
from fcnx.training import trainer

FAST = ["--size", "56", "--weights", "none", "--schedule", "all", "--epochs", "2", "--batch-size", "4"]
FAST += ["--workers", "0", "--val-fraction", "0.25", "--no-augment", "-q"]


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def items(labels: str) -> list[ImageItem]:
    return [
        ImageItem(Path(f"{k}.png"), PurePosixPath(f"images/{label}/{k}.png"), label) for k, label in enumerate(labels)
    ]


def test_folds_are_dealt_per_class_seeded_and_even():
    dealt = assign_folds(items("aaaaabbbbbbbc"), 3, seed=0)
    assert dealt == [1, 1, 2, 2, 3, 2, 3, 3, 2, 3, 1, 1, 1]  # the split of seed 0, as --resume finds it again
    # dealt in turn, class after class: a's five get folds 1 2 3 1 2, b's seven carry on 3 1 2 3 1 2 3, c gets 1
    assert sorted(dealt[:5]) == [1, 1, 2, 2, 3] and sorted(dealt[5:12]) == [1, 1, 2, 2, 3, 3, 3] and dealt[12] == 1
    assert [dealt.count(k) for k in (1, 2, 3)] == [5, 4, 4]  # sizes differ by at most one
    assert assign_folds(items("aaaaabbbbbbbc"), 3, seed=0) == dealt
    assert assign_folds(items("aaaaabbbbbbbc"), 3, seed=1) != dealt
    with pytest.raises(UsageError, match="k >= 2"):
        assign_folds(items("ab"), 1)


@pytest.fixture
def food(tmp_path):
    return make_food101(tmp_path / "food", train=4, test=1)


def test_two_folds_train_two_models_each_image_held_out_once(tmp_path, food, one_thread):
    out = tmp_path / "folds"
    result = run("train", "--folds", "2", "--net", "tiny_vgg", "--data", food, "-o", out, *FAST)
    assert result.exit_code == 0, result.output
    folds = read_folds(out)
    train = datasets.open_dataset(food, "train").items
    assert folds.complete and folds.k == 2 and folds.nets == ["tiny_vgg"] and folds.kernel == 56
    assert folds.images == {str(i.rel): f for i, f in zip(train, assign_folds(train, 2, 0))}  # the exact split
    assert sorted(folds.images) == sorted(str(i.rel) for i in train)  # every image in exactly one fold
    assert [len(folds.held_out(k)) for k in (1, 2)] == [6, 6]
    for fold in folds.folds:  # model k trained and validated on exactly the images outside fold k
        config = trainer.TrainConfig.from_dict({**folds.config, "net": "tiny_vgg", "fold": fold.fold})
        seen = trainer.split(config)
        used = {str(i.rel) for i in seen.train + seen.validation}
        assert used == set(folds.images) - set(folds.held_out(fold.fold))
        best = out / fold.checkpoints["tiny_vgg"]
        meta = checkpoint.read_meta(best)
        assert (meta.arch, meta.input_size, meta.classes) == ("tiny_vgg", 56, list(COLORS))
        assert fold.finished and fold.val_top1 == read_folds(out / fold.folder / "..").folds[fold.fold - 1].val_top1
        card = (best.parent / "README.md").read_text()
        assert f"trained without fold {fold.fold} of 2" in card
        assert json.loads((out / fold.folder / "ensemble.json").read_text())["complete"]
    assert f"fcnx suspects --folds {out}" in result.output and "6 image(s) held out" in result.output

    again = run("train", "--folds", "2", "--net", "tiny_vgg", "--data", food, "-o", out, *FAST)
    assert again.exit_code == 2 and "--resume" in again.output
    done = run("train", "--resume", "-o", out, "--workers", "0", "-q")
    assert done.exit_code == 0 and "trained already" not in done.output  # -q: nothing retrained, nothing said
    suspects = run("suspects", "--folds", out, "--data", food, "-o", tmp_path / "s", "--signal", "graded", "-q")
    assert suspects.exit_code == 0, suspects.output
    assert json.loads((tmp_path / "s" / "suspects.json").read_text())["images"] == 12  # the train split
    test_split = run("suspects", "--folds", out, "--data", food, "--split", "all", "-o", tmp_path / "t")
    assert test_split.exit_code == 2 and "3 of the 15 image(s) are in no held-out fold" in test_split.output
    both = run("suspects", "--folds", out, "--nets", "tiny_vgg", "--data", food, "-o", tmp_path / "u")
    assert both.exit_code == 2 and "leave out --nets" in both.output


@pytest.mark.slow
def test_an_interrupted_folds_run_resumes_in_the_fold_it_stopped_in(tmp_path, food, one_thread, monkeypatch):
    out = tmp_path / "folds"
    original = trainer.train

    def stop_in_second_fold(config, outdir, **kwargs):
        if config.fold == 2:
            kwargs["on_epoch"] = lambda progress: (_ for _ in ()).throw(KeyboardInterrupt)
        return original(config, outdir, **kwargs)

    monkeypatch.setattr(trainer, "train", stop_in_second_fold)
    result = run("train", "--folds", "2", "--net", "tiny_vgg", "--data", food, "-o", out, *FAST)
    assert result.exit_code == 130 and "train: interrupted; continue with: fcnx train --resume" in result.output
    saved = read_folds(out)
    assert not saved.complete and [f.finished for f in saved.folds] == [True, False]
    first = (out / "fold1" / "tiny_vgg" / "best.safetensors").read_bytes()
    refused = run("suspects", "--folds", out, "--data", food, "-o", tmp_path / "s")
    assert refused.exit_code == 2 and "has not finished" in refused.output
    monkeypatch.setattr(trainer, "train", original)

    changed = run("train", "--resume", "-o", out, "--epochs", "3")
    assert changed.exit_code == 2 and "--epochs was 2, not 3" in changed.output
    (food / "meta" / "train.txt").write_text((food / "meta" / "train.txt").read_text().replace("red/3\n", ""))
    moved = run("train", "--resume", "-o", out, "--workers", "0", "-q")
    assert moved.exit_code == 2 and "the split's images changed" in moved.output and "images/red/" in moved.output
    (food / "meta" / "train.txt").write_text((food / "meta" / "train.txt").read_text() + "red/3\n")

    resumed = run("train", "--resume", "-o", out, "--workers", "0", "-q")
    assert resumed.exit_code == 0, resumed.output
    assert (out / "fold1" / "tiny_vgg" / "best.safetensors").read_bytes() == first  # the finished fold is kept
    rows = (out / "fold2" / "tiny_vgg" / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2"]  # the stopped fold went on from its epoch 2
    assert read_folds(out).complete


def test_bad_folds_requests_are_one_line_errors(tmp_path, food):
    for args, message in (
        (["--folds", "1", "--net", "tiny_vgg"], "--folds"),
        (["--folds", "2"], "needs --net NAME"),
        (["--folds", "2", "--net", "tiny_vgg", "--nets", "tiny_vgg"], "not both"),
        (["--folds", "13", "--net", "tiny_vgg"], "needs at least 13 images; the split has 12"),
    ):
        result = run("train", *args, "--data", food, "-o", tmp_path / "r", *FAST)
        assert result.exit_code == 2 and message in result.output, result.output
        assert not (tmp_path / "r").exists()
    nothing = run("train", "--resume", "--folds", "2", "-o", tmp_path / "r")
    assert nothing.exit_code == 2 and "no folds.json here" in nothing.output
    (tmp_path / "bad.json").write_text('{"k": 2, "folds": []}')
    with pytest.raises(UsageError, match="not a folds file"):
        read_folds(tmp_path / "bad.json")


def _solid(path: Path, color: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((320, 320, 3), color, np.uint8)).save(path)


def test_suspects_score_each_image_with_the_model_that_did_not_see_it(tmp_path, tiny_registry):
    """Fold model 1 sees colours as they are; fold model 2 sees red as green. Two red images labelled red: the one
    held out in fold 2 is the suspect (seen as green), the one held out in fold 1 is not."""
    root = tmp_path / "data"
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "classes.txt").write_text("red\nblue\n")
    for name, color in (("red/a", (230, 20, 20)), ("red/b", (230, 20, 20)), ("blue/c", (20, 20, 230))):
        _solid(root / "images" / f"{name}.png", color)
    (root / "meta" / "train.txt").write_text("red/a.png\nred/b.png\nblue/c.png\n")
    (root / "meta" / "test.txt").write_text("")
    run_dir = tmp_path / "folds"
    honest = color_checkpoint(run_dir / "fold1" / "honest.safetensors", "tiny0")
    tensors = checkpoint.read_tensors(honest)
    for key in ("fc.weight", "fc.bias"):  # rows red and green swapped: red pixels score green
        tensors[key] = tensors[key][[1, 0, 2, 3]].contiguous()
    (run_dir / "fold2").mkdir()
    checkpoint.save(run_dir / "fold2" / "swapped.safetensors", tensors, checkpoint.read_meta(honest))

    def write(fold_of_a: int) -> None:
        folds = [
            Fold(1, "fold1", {"tiny0": "fold1/honest.safetensors"}, finished=True),
            Fold(2, "fold2", {"tiny0": "fold2/swapped.safetensors"}, finished=True),
        ]
        images = {"images/red/a.png": fold_of_a, "images/red/b.png": 3 - fold_of_a, "images/blue/c.png": 1}
        config = {"data": str(root), "split": "train"}
        Folds(2, 0, ["tiny0"], 299, config, images, folds, ["red", "green", "blue", "none"], True).write(run_dir)

    for (fold_of_a, suspect), signal in itertools.product(((1, "b"), (2, "a")), ("paper", "graded")):
        write(fold_of_a)
        out = tmp_path / f"s{fold_of_a}{signal}"
        result = run("suspects", "--folds", run_dir / FOLDS, "--data", root, "-o", out, "--signal", signal, "-q")
        assert result.exit_code == 0, result.output
        rows = json.loads((out / "suspects.json").read_text())["suspects"]
        assert [(Path(r["path"]).stem, r["label"], r["other_category"]) for r in rows] == [(suspect, "red", "green")]

    (root / "images" / "red" / "d.png").write_bytes((root / "images" / "red" / "a.png").read_bytes())
    (root / "meta" / "train.txt").write_text("red/a.png\nred/b.png\nblue/c.png\nred/d.png\n")
    outside = run("suspects", "--folds", run_dir, "--data", root, "-o", tmp_path / "x")
    assert outside.exit_code == 2 and "1 of the 4 image(s) are in no held-out fold (images/red/d.png)" in outside.output
    assert len(outside.output.strip().splitlines()) == 1
