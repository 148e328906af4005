"""`--weights hf-hub:user/repo` through huggingface_hub's own cache (offline: a local cache laid out as the Hub's),
and the model card `fcnx train` writes beside best.safetensors."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file
from tiny_train_backbone import COLORS, make_food101

from fcnx.backbones import checkpoint
from fcnx.cli import cli
from fcnx.engine.fcn import load_fcn
from fcnx.errors import WeightsError
from fcnx.training import card, trainer

COMMIT = "0123456789abcdef0123456789abcdef01234567"
FAST = ["--size", "56", "--weights", "none", "--schedule", "all", "--epochs", "1", "--batch-size", "8"]
FAST += ["--workers", "0", "--val-fraction", "0.25", "--no-augment", "-q"]


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def hub_repo(cache: Path, repo: str, files: dict[str, bytes], commit: str = COMMIT) -> None:
    """``files`` as huggingface_hub caches a repository: blobs by hash, snapshot links, refs/main."""
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "blobs").mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(commit)
    for name, data in files.items():
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = root / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny_vgg run on the three colours (one epoch) and the data it was trained on."""
    tmp = tmp_path_factory.mktemp("hub")
    food = make_food101(tmp / "food", train=6, test=2)
    result = run("train", "--net", "tiny_vgg", "--data", food, "-o", tmp / "run", *FAST)
    assert result.exit_code == 0, result.output
    return tmp / "run", food


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return tmp_path / "cache"


def test_train_writes_a_model_card_beside_the_checkpoint(trained):
    out, _ = trained
    text = (out / card.CARD).read_text()
    row = next(r for r in reversed(trainer.read_resume(out)[1].history) if r["best"])
    assert text.startswith("---\nlibrary_name: fcnx\n") and "# tiny_vgg fine-tuned on food (fcnx)" in text
    assert "| kernel (training input side) | 56 |" in text and "W_min(D) = 8D+28 (stride 8)" in text
    assert "| D (pooled cells) at the kernel | 3 |" in text
    assert f"| {row['val_top1']:.2%} | {row['val_top5']:.2%} | {row['val_loss']:.4f} |" in text
    assert [line for line in text.splitlines() if line.startswith("| 0 |") or line.startswith("| 2 |")] == [
        f"| 0 | {list(COLORS)[0]} |",
        f"| 2 | {list(COLORS)[2]} |",
    ]
    assert "--weights tiny_vgg=hf-hub:USER/REPO" in text


def test_an_fcnx_checkpoint_from_a_hub_cache_in_a_fresh_offline_process(trained, tmp_path):
    out, food = trained
    cache = tmp_path / "cache"
    files = {name: (out / name).read_bytes() for name in (trainer.BEST, card.CARD)}
    hub_repo(cache, "someone/tiny-colours", files)
    common = ["evaluate", "--nets", "tiny_vgg", "--data", food, "--split", "test", "-q", "--weights"]
    env = dict(os.environ, HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    outputs = []
    for weights in (
        f"tiny_vgg={out / trainer.BEST}",
        "tiny_vgg=hf-hub:someone/tiny-colours",
        f"tiny_vgg=hf-hub:someone/tiny-colours@{COMMIT}",
    ):
        done = subprocess.run(
            [sys.executable, "-m", "fcnx", *map(str, common), weights], capture_output=True, text=True, env=env
        )
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1] == outputs[2] and "tiny_vgg" in outputs[0]
    missing = subprocess.run(
        [sys.executable, "-m", "fcnx", *map(str, common), "tiny_vgg=hf-hub:someone/elsewhere"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert missing.returncode != 0 and len(missing.stderr.strip().splitlines()) == 1
    assert "hf-hub:someone/elsewhere: none of best.safetensors" in missing.stderr and "HF_HUB_OFFLINE" in missing.stderr


def test_a_timm_style_checkpoint_takes_its_classes_from_config_json(trained, offline_cache, tmp_path):
    out, _ = trained
    tensors = checkpoint.read_tensors(out / trainer.BEST)
    save_file(tensors, tmp_path / "model.safetensors")  # no fcnx metadata: a plain state dict, as timm pushes
    config = {"architecture": "tiny_vgg", "num_classes": 3, "label_names": ["r", "g", "b"]}
    hub_repo(
        offline_cache,
        "timm/tiny",
        {
            "model.safetensors": (tmp_path / "model.safetensors").read_bytes(),
            "config.json": json.dumps(config).encode(),
        },
    )
    hub = load_fcn("tiny_vgg", "hf-hub:timm/tiny", kernel=56)
    local = load_fcn("tiny_vgg", out / trainer.BEST)
    assert hub.classes == ["r", "g", "b"] and local.classes == list(COLORS)
    images = torch.rand(2, 3, 56, 56, generator=torch.Generator().manual_seed(0)) * 255
    with torch.no_grad():
        assert torch.equal(hub(images), local(images))

    hub_repo(
        offline_cache,
        "timm/nolabels",
        {"model.safetensors": (tmp_path / "model.safetensors").read_bytes(), "config.json": b'{"num_classes": 3}'},
    )
    with pytest.raises(WeightsError, match="no label_names"):
        load_fcn("tiny_vgg", "hf-hub:timm/nolabels")


def test_train_continues_from_a_hub_checkpoint(trained, offline_cache, tmp_path):
    out, food = trained
    hub_repo(offline_cache, "someone/tiny-colours", {trainer.BEST: (out / trainer.BEST).read_bytes()})
    args = ["train", "--net", "tiny_vgg", "--data", food, "-o", tmp_path / "again", *FAST]
    args[args.index("none")] = "hf-hub:someone/tiny-colours"
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert (
        checkpoint.read_meta(tmp_path / "again" / trainer.BEST).extra["training"]["weights"]
        == "hf-hub:someone/tiny-colours"
    )
    first = trainer.read_resume(tmp_path / "again")[1].history[0]
    before = trainer.read_resume(out)[1].history[0]
    assert first["train_loss"] < before["train_loss"]  # it started from the trained weights, not from scratch


def test_an_unreachable_hub_is_one_error_at_once(offline_cache, monkeypatch):
    """One quick request decides (huggingface_hub alone retries each file for about 25 s before giving up)."""
    from huggingface_hub import constants

    from fcnx.errors import FcnxError

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # the discard port: connection refused
    with pytest.raises(FcnxError, match=r"cannot fetch hf-hub:someone/absent from http://127.0.0.1:9 \(") as caught:
        load_fcn("tiny_vgg", "hf-hub:someone/absent")
    assert "EntryNotFound" not in str(caught.value)  # the probe answered, not a download that gave up
