"""``fcnx crop`` with real timm backbones (Inception-v3 + Xception at the common kernel 299)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from fcnx.cli import cli
from fcnx.engine.cropper import Cropper
from fcnx.method import geometry
from fcnx.testing import random_checkpoint

CLASSES = ["cup", "saucer", "table"]


@pytest.mark.slow
def test_inception_v3_and_xception_crop_a_photo(tmp_path):
    from skimage import data

    photo = tmp_path / "photos" / "coffee.jpg"
    photo.parent.mkdir()
    Image.fromarray(data.coffee()).resize((200, 150), Image.Resampling.BICUBIC).save(photo, quality=92)
    weights = {
        name: random_checkpoint(tmp_path / f"{name}.safetensors", name, CLASSES, input_size=299, seed=k)
        for k, name in enumerate(["inception_v3", "xception"])
    }
    out = tmp_path / "out"
    argv = [
        "crop",
        "--nets",
        "inception_v3,xception",
        "--max-scale",
        "1.44",
        "--workers",
        "1",
        "--heatmaps",
        "--category",
        "cup",
        str(photo.parent),
        "-o",
        str(out),
    ]
    for name, path in weights.items():
        argv += ["--weights", f"{name}={path}"]
    result = CliRunner().invoke(cli, argv, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (record,) = [json.loads(line) for line in (out / "boxes.jsonl").read_text().splitlines()]
    assert record["nets"] == 2 and set(record["net_scores"]) == {"inception_v3", "xception"}
    assert record["levels_examined"] == 3 and record["category"] == "cup"
    # pools at the common kernel: Inception-v3 32D+43 -> 8, Xception 32D-25 -> 10; both give the 1 x 4 grid at level 0
    cropper = Cropper.from_nets(["inception_v3", "xception"], weights, device="cpu", max_scale=1.44, categories=["cup"])
    assert [f.pool for f in cropper.ensemble.fcns] == [8, 10]
    assert [f.spec.heatmap_shape(299, 399, 299) for f in cropper.ensemble.fcns] == [(1, 4), (1, 4)]
    (box,) = cropper.crop_image(photo).boxes
    assert (record["level"], record["cell"]) == (box.level, list(box.cell))
    assert record["x"] == pytest.approx(box.x) and record["confidence"] == pytest.approx(box.confidence, abs=1e-5)
    x1, y1, x2, y2 = geometry.pixel_box((box.x, box.y, box.w, box.h), (150, 200))
    assert Image.open(out / "coffee.jpg").size == (x2 - x1, y2 - y1)
    heat = np.asarray(Image.open(out / record["heatmap"]))
    assert heat.shape[:2] == (150, 200)
