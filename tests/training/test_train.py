"""`fcnx train`, the dataset loader and `fcnx evaluate` on what training produced.

Datasets are built by the tests (coloured discs and squares on noise, 3 classes, 16 images each)
and the backbone is a tiny batch-normed net registered inline (tests/tiny_train_backbone.py), so a
training run takes a second or two on one CPU thread.
"""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from image_corpus import BOMB_LIMIT, LOADABLE, UNREADABLE, write_corpus
from PIL import Image
from tiny_train_backbone import COLORS, NAME, TinyTrainNet, make_folders, make_food101

from fcnx.backbones import checkpoint
from fcnx.cli import cli
from fcnx.engine.ensemble import resize
from fcnx.engine.fcn import load_fcn
from fcnx.io import datasets as listing
from fcnx.io.decoding import load_rgb
from fcnx.training import card, datasets, finetune, trainer

CLASSES = list(COLORS)
FAST = ["--size", "64", "--weights", "none", "--batch-size", "8", "--workers", "0", "--val-fraction", "0.25", "-q"]


def run(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


def train_args(root, out, *extra, batch: int = 8) -> list[str]:
    fast = [str(batch) if k and FAST[k - 1] == "--batch-size" else a for k, a in enumerate(FAST)]
    return ["train", "--net", NAME, "--data", str(root), "-o", str(out), *fast, *extra]


def rows(path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.open()))


def classify(model: torch.nn.Module, paths, size: int = 64) -> np.ndarray:
    """Class probabilities by hand: the classifier (not the FCN) on each whole image squashed to ``size``."""
    scale, shift = 1 / (0.25 * 255), -0.5 / 0.25
    out = []
    with torch.no_grad():
        for path in paths:
            pixels = torch.from_numpy(load_rgb(path)[0]).permute(2, 0, 1)[None]
            out.append(model(resize(pixels, (size, size)) * scale + shift).softmax(1)[0].numpy())
    return np.array(out)


def load_model(path) -> TinyTrainNet:
    meta = checkpoint.read_meta(path)
    model = TinyTrainNet(len(meta.classes), tuple(meta.head))
    checkpoint.load_state_strict(model, checkpoint.read_tensors(path), path)
    return model.eval()


@pytest.fixture
def food(tmp_path):
    return make_food101(tmp_path / "food")


# --------------------------------------------------------------------------- datasets


def test_open_dataset_both_layouts(tmp_path, food):
    train = listing.open_dataset(food, "train")
    assert (train.layout, train.classes, len(train.items)) == ("food101", CLASSES, 36)
    assert train.items[0].rel.as_posix() == "images/red/0.jpg" and train.labels()[:1] == [0]
    assert len(listing.open_dataset(food, "test").items) == 12 and len(listing.open_dataset(food, "all").items) == 48

    plain = listing.open_dataset(make_folders(tmp_path / "plain"), "train")
    assert (plain.layout, plain.classes, len(plain.items)) == ("folders", sorted(CLASSES), 12)
    assert {item.label for item in plain.items if item.path.parent.name == "green"} == {"green"}
    split = make_folders(tmp_path / "split", per_class=2, splits=("train", "val"))
    assert [len(listing.open_dataset(split, s).items) for s in ("train", "test", "all")] == [6, 6, 12]
    assert all(i.rel.parts[0] == "val" for i in listing.open_dataset(split, "test").items)


def test_holdout_is_seeded_and_stratified(food):
    items = listing.open_dataset(food, "train").items
    train, val = listing.holdout(items, 0.25, seed=3)
    assert [sum(i.label == c for i in val) for c in CLASSES] == [3, 3, 3]
    assert sorted(map(str, train + val)) == sorted(map(str, items)) and not set(train) & set(val)
    assert listing.holdout(items, 0.25, seed=3) == (train, val)
    assert listing.holdout(items, 0.25, seed=4)[1] != val
    assert listing.holdout(items, 0.0) == (items, [])


def _break(root, what: str) -> str:
    """Damage a Food-101 root; returns the file the error must name."""
    meta = root / "meta"
    if what == "no classes.txt":
        (meta / "classes.txt").unlink()
        return "meta/classes.txt"
    if what == "no train.txt":
        (meta / "train.txt").unlink()
        return "meta/train.txt"
    if what == "traversal":
        with (meta / "train.txt").open("a") as f:
            f.write("red/../../../../etc/passwd\n")
        return "meta/train.txt:37"
    if what == "extra folder":
        (root / "images" / "purple").mkdir()
        return "meta/classes.txt"
    if what == "missing folder":
        with (meta / "classes.txt").open("a") as f:
            f.write("purple\n")
        return "meta/classes.txt"
    if what == "empty class":
        lines = [line for line in (meta / "train.txt").read_text().splitlines() if not line.startswith("blue/")]
        (meta / "train.txt").write_text("\n".join(lines) + "\n")
        return "meta/classes.txt"
    raise AssertionError(what)


@pytest.mark.parametrize(
    "what, message",
    [
        ("no classes.txt", "missing class list"),
        ("no train.txt", "missing image list of the train split"),
        ("traversal", "refusing the path"),
        ("extra folder", "images/ has folders not in the list: purple"),
        ("missing folder", "classes without a folder in images/: purple"),
        ("empty class", "1 class(es) have no image in meta/train.txt (on disk): blue"),
    ],
)
def test_bad_food101_roots_are_one_line_errors(tmp_path, food, tiny_train, what, message):
    named = _break(food, what)
    result = run(*train_args(food, tmp_path / "out"))
    assert result.exit_code == 2, result.output
    error = result.stderr.strip()
    assert error.startswith("Error: ") and "\n" not in error and "Traceback" not in result.output
    assert message in error and named in error
    assert not (tmp_path / "out" / trainer.RESUME).exists()


@pytest.mark.parametrize(
    "meta, line",
    [
        ("train.txt", "../../etc/passwd"),
        ("train.txt", "red/../../../../etc/passwd"),
        ("train.txt", "/etc/passwd"),
        ("train.txt", "red/.."),
        ("train.txt", "red\\..\\..\\x"),
        ("train.txt", "red/./../../x"),
        ("test.txt", "../../../../etc/shadow"),
        ("classes.txt", "../etc"),
        ("classes.txt", ".."),
    ],
)
def test_meta_names_leaving_images_are_refused_by_every_command(tmp_path, food, tiny_train, meta, line):
    with (food / "meta" / meta).open("a") as f:
        f.write(line + "\n")
    number = len((food / "meta" / meta).read_text().splitlines())
    nets = ["--nets", NAME, "--data", food, "--split", "all"]
    for args in (
        train_args(food, tmp_path / "out", "--split", "all"),
        ["evaluate", *nets],
        ["suspects", *nets, "-o", tmp_path / "review"],
    ):
        result = run(*args)
        error = result.stderr.strip()
        assert result.exit_code == 2 and "\n" not in error and "Traceback" not in result.output, (
            args[0],
            result.output,
        )
        assert f"meta/{meta}:{number}: " in error and "refusing the path" in error, (args[0], error)
    assert not (tmp_path / "out").exists() and not (tmp_path / "review").exists()


def test_bad_class_folders(tmp_path, tiny_train):
    root = make_folders(tmp_path / "plain", per_class=2)
    (root / "purple").mkdir()
    result = run(*train_args(root, tmp_path / "out"))
    assert result.exit_code == 2 and "purple: 1 class folder(s) hold no image" in result.stderr
    result = run("evaluate", "--nets", NAME, "--data", str(make_folders(tmp_path / "p2", per_class=1)))
    assert result.exit_code == 2 and "have no test split: use --split all" in result.stderr


# --------------------------------------------------------------------------- a run, its checkpoint, evaluate


def test_train_loss_falls_checkpoint_loads_and_evaluate_matches_hand(tmp_path, food, tiny_train):
    out = tmp_path / "run"
    result = run(*train_args(food, out, "--schedule", "all", "--epochs", "6", "--patience", "6", "--lr", "0.01"))
    assert result.exit_code == 0, result.output
    history = rows(out / trainer.METRICS)
    assert [int(r["epoch"]) for r in history] == [1, 2, 3, 4, 5, 6]
    losses = [float(r["train_loss"]) for r in history]
    assert np.mean(losses[-2:]) < 0.6 * losses[0], losses
    assert int(history[0]["trainable"]) == sum(p.numel() for p in TinyTrainNet(3).parameters())

    best = out / trainer.BEST
    meta = checkpoint.read_meta(best)
    assert (meta.arch, meta.classes, meta.input_size, meta.head) == (NAME, CLASSES, 64, [])
    chosen = max(history, key=lambda r: float(r["val_top1"]))  # the first epoch with the best validation top-1
    assert meta.extra["training"]["epoch"] == int(chosen["epoch"]) and chosen["best"] == "True"
    # the validation top-1 is what the saved weights score on the held-out images, resized as evaluate does
    model = load_model(best)
    _, val = listing.holdout(listing.open_dataset(food, "train").items, 0.25, 0)
    probs = classify(model, [i.path for i in val])
    assert np.mean(probs.argmax(1) == [CLASSES.index(i.label) for i in val]) == pytest.approx(float(chosen["val_top1"]))

    fcn = load_fcn(NAME, best)  # the checkpoint is enough on its own
    assert (fcn.classes, fcn.kernel, fcn.pool) == (CLASSES, 64, 2)
    picture = torch.rand(1, 3, 64, 64) * 255
    with torch.no_grad():
        assert torch.allclose(fcn(picture)[:, :, 0, 0], model(picture / (0.25 * 255) - 2.0), atol=1e-5)
    with Image.open(out / trainer.PLOT) as plot:
        assert plot.size == (1120, 400) and len(np.unique(np.asarray(plot.convert("L")))) > 20

    ev = tmp_path / "ev"
    result = run(
        "evaluate", "--nets", NAME, "--weights", f"{NAME}={best}", "--kernel", "64", "--data", food, "-q", "-o", ev
    )
    assert result.exit_code == 0, result.output
    [row] = json.loads((ev / "evaluation.json").read_text())["rows"]
    test = listing.open_dataset(food, "test").items
    probs = classify(model, [i.path for i in test])
    labels = [CLASSES.index(i.label) for i in test]
    assert row["images"] == 12
    assert row["original_top1"] == pytest.approx(np.mean(probs.argmax(1) == labels))
    assert row["original_top5"] == 1.0  # 3 classes: the top 5 hold every label

    # the checkpoint drives `fcnx crop`, whose boxes.jsonl `fcnx evaluate` reads back
    crops = tmp_path / "crops"
    result = run(
        "crop",
        "--nets",
        NAME,
        "--weights",
        f"{NAME}={best}",
        "--kernel",
        "64",
        food,
        "-o",
        crops,
        "--split",
        "test",
        "--dry-run",
        "-q",
    )
    assert result.exit_code == 0, result.output
    result = run(
        "evaluate",
        "--nets",
        NAME,
        "--weights",
        f"{NAME}={best}",
        "--kernel",
        "64",
        "--data",
        food,
        "--crops",
        crops / "boxes.jsonl",
        "-q",
        "-o",
        tmp_path / "ev-crops",  # other settings than ev's: a folder of its own (ev refuses them)
    )
    assert result.exit_code == 0, result.output
    [row] = json.loads((tmp_path / "ev-crops" / "evaluation.json").read_text())["rows"]
    assert 0 <= row["cropped_top1"] <= 1 and row["delta_top1"] == pytest.approx(
        row["cropped_top1"] - row["original_top1"]
    )


def test_evaluate_reads_a_hand_written_boxes_file(tmp_path, food, tiny_train):
    """Nested `box`, several categories per image (the label's box counts), and `file` when `path` is stale."""
    weights = tmp_path / "w.safetensors"
    torch.manual_seed(0)
    model = TinyTrainNet(3).eval()
    checkpoint.save(weights, model.state_dict(), checkpoint.CheckpointMeta(NAME, CLASSES, 64))
    test = listing.open_dataset(food, "test").items
    boxes, expected = [], []
    for k, item in enumerate(test):
        height, width = load_rgb(item.path)[0].shape[:2]
        other = CLASSES[(CLASSES.index(item.label) + 1) % 3]
        half = {"x": width / 2, "y": 0, "w": width / 2, "h": height / 2}  # the label's box: the top-right quarter
        boxes.append({"path": str(item.path), "box": {"x": 0, "y": 0, "w": 3, "h": 3}, "category": other})
        record = {"box": half, "category": item.label}
        record |= {"path": "/elsewhere/x.jpg", "file": item.rel.as_posix()} if k % 2 else {"path": str(item.path)}
        boxes.append(record)
        pixels = load_rgb(item.path)[0][: math.ceil(height / 2), math.floor(width / 2) :]
        expected.append(pixels)
    (tmp_path / "boxes.jsonl").write_text("".join(json.dumps(b) + "\n" for b in boxes) + "\n")
    result = run(
        "evaluate",
        "--nets",
        NAME,
        "--weights",
        f"{NAME}={weights}",
        "--kernel",
        "64",
        "--data",
        food,
        "--crops",
        tmp_path / "boxes.jsonl",
        "-q",
        "-o",
        tmp_path / "ev",
    )
    assert result.exit_code == 0, result.output
    [row] = json.loads((tmp_path / "ev" / "evaluation.json").read_text())["rows"]
    scale, shift = 1 / (0.25 * 255), -2.0
    with torch.no_grad():
        hits = [
            int(model(resize(torch.from_numpy(p.copy()).permute(2, 0, 1)[None], (64, 64)) * scale + shift).argmax())
            == CLASSES.index(i.label)
            for p, i in zip(expected, test)
        ]
    assert row["cropped_top1"] == pytest.approx(np.mean(hits))


def test_evaluate_refuses_nets_of_another_class_list(tmp_path, food, tiny_train):
    weights = checkpoint.save(
        tmp_path / "w.safetensors", TinyTrainNet(2).state_dict(), checkpoint.CheckpointMeta(NAME, ["red", "yellow"], 64)
    )
    result = run("evaluate", "--nets", NAME, "--weights", f"{NAME}={weights}", "--kernel", "64", "--data", food)
    assert result.exit_code == 2
    assert "2 of the dataset's 3 classes are not classes of the nets (e.g. 'green', 'blue')" in result.stderr


def test_unreadable_and_missing_images_are_skipped_and_counted(tmp_path, food, tiny_train):
    (food / "images" / "red" / "1.jpg").write_bytes(b"not a jpeg")
    (food / "images" / "green" / "2.jpg").unlink()
    out = tmp_path / "run"
    args = [a for a in train_args(food, out, "--schedule", "all", "--epochs", "2") if a != "-q"]
    result = run(*args, "--val-fraction", "0")
    assert result.exit_code == 1, result.output
    assert f"error: {food / 'images' / 'green' / '2.jpg'}: listed in meta but no such file" in result.stderr
    assert f"error: {food / 'images' / 'red' / '1.jpg'}: not an image file Pillow can read" in result.stderr
    assert "train: 2 image(s) skipped (1 missing, 1 unreadable)" in result.stderr
    assert [int(r["unreadable"]) for r in rows(out / trainer.METRICS)] in ([1, 1], [0, 1], [1, 0])


def test_train_goes_through_the_bad_input_corpus(tmp_path, food, tiny_train, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", BOMB_LIMIT)  # --workers 0: applies to the loader
    red = write_corpus(food / "images" / "red", nested=False)
    (red / "dir.jpg").mkdir()
    with (food / "meta" / "train.txt").open("a") as f:
        f.writelines(f"red/{name}\n" for name in [*LOADABLE, *UNREADABLE, "dir.jpg", "gone.png"])
    bad = {**UNREADABLE, "dir.jpg": "is a folder, not an image", "gone.png": "listed in meta but no such file"}
    out = tmp_path / "run"
    # one batch holds every image, so each is met in each epoch; -q: the errors are shown all the same
    result = run(*train_args(food, out, "--schedule", "all", "--epochs", "2", batch=64))
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output  # no crash
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == len(bad), "\n".join(errors)  # once each, though met in both epochs
    for name, message in bad.items():
        assert any(line.startswith(f"error: {red / name}: ") and message in line for line in errors), name
    assert f"train: {len(bad)} image(s) skipped (1 missing, {len(bad) - 1} unreadable)" in result.stderr
    assert sorted((out / trainer.SKIPPED).read_text().splitlines()) == sorted(e.removeprefix("error: ") for e in errors)
    assert [int(r["unreadable"]) for r in rows(out / trainer.METRICS)] == [len(bad) - 1] * 2
    assert load_model(out / trainer.BEST) is not None  # the run's result is complete


# --------------------------------------------------------------------------- schedules


def test_blockwise_plan_of_the_tiny_net_and_inception_v3():
    import timm

    steps = finetune.plan_steps(TinyTrainNet(3), "blockwise")
    head = {"fc.weight", "fc.bias"}
    assert [s.name for s in steps] == [
        "head",
        "head + down to blocks.3",
        "head + down to blocks.2",
        "head + down to blocks.1",
        "head + down to blocks.0",
        "head + down to stem",
    ]
    assert steps[0].trainable == head
    assert steps[1].trainable == head | {f"blocks.3.{k}" for k in ("0.weight", "0.bias", "1.weight", "1.bias")}
    assert steps[-1].trainable == {n for n, _ in TinyTrainNet(3).named_parameters()}
    assert [s.name for s in finetune.plan_steps(TinyTrainNet(3), "blockwise", 2)][1:] == [
        "head + down to blocks.2",
        "head + down to blocks.0",
        "head + down to stem",
    ]
    assert [s.name for s in finetune.plan_steps(TinyTrainNet(3, (8,)), "two-pass")] == ["head", "all layers"]

    iv3 = timm.create_model("inception_v3", num_classes=5)
    steps = finetune.plan_steps(iv3, "blockwise")
    assert [s.name.removeprefix("head + down to ") for s in steps[:4]] == ["head", "Mixed_7c", "Mixed_7b", "Mixed_7a"]
    assert steps[0].trainable == {"fc.weight", "fc.bias"}
    assert {n.split(".")[0] for n in steps[2].trainable} == {"fc", "Mixed_7c", "Mixed_7b"}
    assert len(steps) == 14 and steps[-1].trainable == {n for n, _ in iv3.named_parameters()}


def test_blockwise_run_trains_exactly_each_steps_layers(tmp_path, food, tiny_train):
    """Each step changes its own layers only; frozen batch-norm layers keep their statistics."""
    out = tmp_path / "run"
    snapshots = []
    config = trainer.TrainConfig(
        net=NAME,
        data=str(food),
        size=64,
        weights="none",
        head=[8],
        schedule="blockwise",
        epochs=1,
        batch_size=8,
        lr=0.05,
        finetune_lr=0.05,
        val_fraction=0.0,
    )

    def snapshot(progress):
        tensors = checkpoint.read_tensors(out / trainer.RESUME)
        snapshots.append({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})

    torch.manual_seed(0)
    start = {k: v.clone() for k, v in finetune.initial_model(tiny_train, CLASSES, [8], "none")[0].state_dict().items()}
    result = trainer.train(config, out, device="cpu", workers=0, quiet=True, log=lambda s: None, on_epoch=snapshot)
    assert len(snapshots) == len(result.steps) == 6
    before = start
    for step, after in zip(result.steps, snapshots):
        changed = {k for k in after if not torch.equal(after[k], before[k])}
        modules = {k.rsplit(".", 1)[0] for k in step.trainable}
        expected = {k for k in after if k.rsplit(".", 1)[0] in modules and "num_batches_tracked" not in k}
        assert changed - {k for k in changed if "num_batches_tracked" in k} == expected, step.name
        before = after


def test_resume_repeats_the_uninterrupted_run(tmp_path, food, tiny_train):
    base = ["--schedule", "two-pass", "--epochs", "3", "--patience", "5", "--head", "8", "--lr", "0.02"]
    assert run(*train_args(food, tmp_path / "a", *base)).exit_code == 0

    class Stop(Exception):
        pass

    def stop_after_two(progress):
        if progress.epoch == 2:
            raise Stop

    config = trainer.TrainConfig(
        net=NAME,
        data=str(food),
        size=64,
        weights="none",
        head=[8],
        schedule="two-pass",
        epochs=3,
        patience=5,
        batch_size=8,
        lr=0.02,
        val_fraction=0.25,
    )
    with pytest.raises(Stop):
        trainer.train(
            config, tmp_path / "b", device="cpu", workers=0, quiet=True, log=lambda s: None, on_epoch=stop_after_two
        )
    assert len(rows(tmp_path / "b" / trainer.METRICS)) == 2
    result = run("train", "--resume", "-o", tmp_path / "b", "--workers", "0", "-q")
    assert result.exit_code == 0, result.output
    a, b = (checkpoint.read_tensors(tmp_path / d / trainer.BEST) for d in "ab")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    strip = lambda table: [{k: v for k, v in r.items() if k != "seconds"} for r in table]
    assert strip(rows(tmp_path / "a" / trainer.METRICS)) == strip(rows(tmp_path / "b" / trainer.METRICS))
    assert len(rows(tmp_path / "b" / trainer.METRICS)) == 6

    again = run("train", "--resume", "-o", tmp_path / "b")
    assert again.exit_code == 0 and "this run has finished" in again.stdout
    changed = run("train", "--resume", "-o", tmp_path / "b", "--lr", "0.5")
    assert changed.exit_code == 2 and "--lr was 0.02, not 0.5" in changed.stderr
    fresh = run(*train_args(food, tmp_path / "b"))
    assert fresh.exit_code == 2 and "holds a training run already" in fresh.stderr


# --------------------------------------------------------------------------- weights and options


def test_transfer_from_a_checkpoint_and_from_a_plain_state_dict(tmp_path, tiny_train):
    torch.manual_seed(1)
    source = TinyTrainNet(5, (8,))
    ckpt = checkpoint.save(
        tmp_path / "src.safetensors",
        source.state_dict(),
        checkpoint.CheckpointMeta(NAME, list("abcde"), 64, [8], {"pooling": "keras"}),
    )
    model, carried = finetune.initial_model(tiny_train, CLASSES, [], str(ckpt))
    assert carried == {"pooling": "keras"} and model.fc.out_features == 3
    limit = math.sqrt(6 / (32 + 3))  # the new head: Glorot-uniform, zero bias
    assert model.fc.weight.abs().max() <= limit and model.fc.weight.abs().max() > limit / 2
    assert not model.fc.bias.any()
    body = {k: v for k, v in source.state_dict().items() if not k.startswith("fc.")}
    assert all(torch.equal(model.state_dict()[k], v) for k, v in body.items())
    same, _ = finetune.initial_model(tiny_train, list("abcde"), [8], str(ckpt))  # same classes and head: kept
    assert all(torch.equal(same.state_dict()[k], v) for k, v in source.state_dict().items())

    plain = tmp_path / "plain.pth"
    torch.save(source.state_dict(), plain)
    model, _ = finetune.initial_model(tiny_train, CLASSES, [4], str(plain))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in body.items()) and model.fc[0].out_features == 4
    broken = dict(source.state_dict()) | {"blocks.0.0.weight": torch.zeros(1)}
    torch.save(broken, plain)
    result = run(
        "train",
        "--net",
        NAME,
        "--data",
        str(make_food101(tmp_path / "f")),
        "-o",
        tmp_path / "o",
        "--weights",
        plain,
        "-q",
    )
    assert result.exit_code == 1
    assert "plain.pth: does not fit TinyTrainNet: tensor 'blocks.0.0.weight' has shape (1,)" in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--net", "tiny_trian"], "unknown backbone 'tiny_trian' (did you mean: tiny_train"),
        (
            ["--weights", "pretrained"],
            (
                "cannot load the ImageNet weights 'tiny.hub' of tiny_train (no network access?): "
                "give a weight file with --weights FILE"
            ),
        ),
        (["--weights", "nothere.safetensors"], "nothere.safetensors: no such weight file"),
        (["--head", "1024,x"], "--head expects comma-separated layer widths"),
        (["--opt", "nosuch"], "unknown optimizer 'nosuch'"),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path, food, tiny_train, args, message):
    base = [
        "train",
        "--net",
        NAME,
        "--data",
        str(food),
        "-o",
        str(tmp_path / "out"),
        "--size",
        "64",
        "--weights",
        "none",
        "--workers",
        "0",
        "-q",
    ]
    for flag, value in zip(args[::2], args[1::2]):
        if flag in base:
            base[base.index(flag) + 1] = value
        else:
            base += [flag, value]
    result = run(*base)
    assert result.exit_code in (1, 2) and message in result.stderr, result.output
    assert "\n" not in result.stderr.strip()


def test_output_inside_the_dataset_and_resume_of_nothing(tmp_path, food, tiny_train):
    result = run(*train_args(food, food / "runs"))
    assert result.exit_code == 2 and "overlaps the input" in result.stderr
    result = run("train", "--resume", "-o", tmp_path / "none")
    assert result.exit_code == 2 and "nothing to resume" in result.stderr
    result = run("train", "-o", tmp_path / "x")
    assert result.exit_code == 2 and "needs --net NAME and --data ROOT" in result.stderr


# --------------------------------------------------------------------------- torchrun


LAUNCHER = """
import sys
sys.path.insert(0, {tests!r})
import torch
torch.set_num_threads(1)
import tiny_train_backbone
tiny_train_backbone.register()
from fcnx.cli import main
sys.argv = ["fcnx", *sys.argv[1:]]
main()
"""


def test_torchrun_two_processes_on_gloo_match_one_process(tmp_path, food, tiny_train):
    """2 processes x batch 4 under DistributedDataParallel = 1 process x batch 8.

    The head step (batch-norm frozen) gives the same losses and validation scores; the second step
    (every layer, batch statistics per process) runs and the rank-0 checkpoint loads back.
    """
    import os
    import subprocess
    import sys
    from pathlib import Path

    common = ["--schedule", "two-pass", "--epochs", "2", "--patience", "5", "--no-augment", "--lr", "0.05"]
    single = run(*train_args(food, tmp_path / "one", *common))
    assert single.exit_code == 0, single.output
    launcher = tmp_path / "launch.py"
    launcher.write_text(LAUNCHER.format(tests=str(Path(__file__).parents[1])))
    args = train_args(food, tmp_path / "two", *common, batch=4)
    env = dict(os.environ, OMP_NUM_THREADS="1", FCNX_DEBUG="1")
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(launcher), *args],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = rows(tmp_path / "one" / trainer.METRICS), rows(tmp_path / "two" / trainer.METRICS)
    assert [r["step"] for r in two] == ["1", "1", "2", "2"]
    for a, b in zip(one[:2], two[:2]):
        for key in ("train_loss", "train_top1", "val_loss", "val_top1", "val_top5"):
            assert float(a[key]) == pytest.approx(float(b[key]), rel=1e-5, abs=1e-6), key
    assert all(math.isfinite(float(r["train_loss"])) for r in two)
    assert load_fcn(NAME, tmp_path / "two" / trainer.BEST).classes == CLASSES
    assert checkpoint.read_meta(tmp_path / "two" / trainer.BEST).extra["training"]["processes"] == 2


#: prepended to LAUNCHER: the process kills itself half-way through writing its first resume checkpoint
CUT_RESUME = """
import os, signal
replace = os.replace
def cut_replace(src, dst):
    if os.path.basename(dst) == "resume.safetensors":  # killed half-way through writing the checkpoint
        data = open(src, "rb").read()
        open(src, "wb").write(data[:len(data) // 2])
        os.kill(os.getpid(), signal.SIGKILL)
    replace(src, dst)
os.replace = cut_replace
"""


def test_a_killed_run_resumes_with_each_epoch_once_as_if_never_killed(tmp_path, food, tiny_train):
    """kill -9 once the first resume checkpoint exists (wherever the run then is), then a resumed run killed in the
    middle of writing its checkpoint; ``--resume`` then finishes with every epoch once, no temporary left, and the
    result of an uninterrupted run."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    common = ["--schedule", "two-pass", "--head", "8", "--epochs", "6", "--patience", "10", "--lr", "0.02"]
    launcher = tmp_path / "launch.py"
    launcher.write_text(LAUNCHER.format(tests=str(Path(__file__).parents[1])))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, str(launcher), *train_args(food, out, *common)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if (out / trainer.RESUME).exists():
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()[-3000:]
    done = len(trainer.read_resume(out)[1].history)
    assert 1 <= done < 12
    cut = tmp_path / "cut.py"
    cut.write_text(CUT_RESUME + LAUNCHER.format(tests=str(Path(__file__).parents[1])))
    killed = subprocess.run(
        [sys.executable, str(cut), "train", "--resume", "-o", str(out), "--workers", "0", "-q"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert len(list(out.glob(".*.fcnx-tmp"))) == 1  # half written, never renamed into place
    assert len(trainer.read_resume(out)[1].history) == done and checkpoint.read_tensors(out / trainer.RESUME)
    resumed = run("train", "--resume", "-o", out, "--workers", "0", "-q")
    assert resumed.exit_code == 0, resumed.output
    assert [int(r["epoch"]) for r in rows(out / trainer.METRICS)] == list(range(1, 13))
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [trainer.BEST, trainer.RESUME, trainer.METRICS, trainer.PLOT, card.CARD]
    )
    progress = trainer.read_resume(out)[1]
    assert progress.finished and len(progress.history) == 12
    assert load_model(out / trainer.BEST).fc is not None
    whole = tmp_path / "whole"
    assert run(*train_args(food, whole, *common)).exit_code == 0
    a, b = (checkpoint.read_tensors(d / trainer.BEST) for d in (whole, out))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    strip = lambda table: [{k: v for k, v in r.items() if k != "seconds"} for r in table]
    assert strip(rows(whole / trainer.METRICS)) == strip(rows(out / trainer.METRICS))


def test_validation_images_are_read_and_resized_exactly_as_evaluate_does(tmp_path, food):
    """A large JPEG is decoded whole (no draft) and squashed with fcnx.engine.ensemble.resize."""
    big = food / "images" / "red" / "0.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (700, 900, 3), dtype=np.uint8)).save(big, quality=90)
    items = [i for i in listing.open_dataset(food, "train").items if i.path == big]
    pixels, label, index = datasets.ImageDataset(items, CLASSES, 64, train=False)[0]
    expected = resize(torch.from_numpy(load_rgb(big)[0]).permute(2, 0, 1)[None], (64, 64))[0]
    assert (label, index) == (0, 0) and torch.equal(pixels, expected)
    augmented, label, _ = datasets.ImageDataset(items, CLASSES, 64, train=True)[0]
    assert augmented.shape == (3, 64, 64) and augmented.dtype == torch.float32 and label == 0
