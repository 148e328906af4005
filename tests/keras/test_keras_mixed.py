"""A PyTorch FCN and a Keras FCN on the same image at the common kernel 299: the same heatmap grid,
cell (i, j) covering the same window [32 i, 32 i + 299) in both, so their heatmaps can be summed.
Then ``fcnx crop --nets inception_v3,keras_xception`` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from keras_helpers import CLASSES, needs_tf
from PIL import Image

from fcnx.method import geometry

pytestmark = needs_tf
KERNEL = 299


def test_torch_and_keras_heatmaps_align_at_kernel_299(tmp_path):
    from fcnx.engine.fcn import load_fcn
    from fcnx.testing import random_checkpoint
    from fcnx_keras.fcn import KerasFCNModule

    torch_fcn = load_fcn(
        "inception_v3",
        random_checkpoint(tmp_path / "iv3.safetensors", "inception_v3", CLASSES, input_size=KERNEL),
        kernel=KERNEL,
    )
    keras_fcn = load_fcn("keras_xception", classes=CLASSES, kernel=KERNEL)
    assert isinstance(keras_fcn.net, KerasFCNModule) and (torch_fcn.pool, keras_fcn.pool) == (8, 10)
    # 299 + 2*32 + 28: Xception (32D-25) fits one more window at the right/bottom edge than Inception-v3 (32D+43)
    height, width = KERNEL + 64, KERNEL + 64 + 28
    pixels = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(0)) * 255
    with torch.inference_mode():
        t_map, k_map = torch_fcn(pixels), keras_fcn(pixels)
    assert t_map.device == k_map.device and t_map.dtype == k_map.dtype == torch.float32
    assert tuple(t_map.shape[-2:]) == torch_fcn.spec.heatmap_shape(height, width, KERNEL) == (3, 3)
    assert tuple(k_map.shape[-2:]) == keras_fcn.spec.heatmap_shape(height, width, KERNEL) == (3, 4)
    common = (geometry.common_cells(height, KERNEL, 32), geometry.common_cells(width, KERNEL, 32))
    assert common == (3, 3)
    summed = t_map[..., : common[0], : common[1]].softmax(1) + k_map[..., : common[0], : common[1]].softmax(1)
    assert summed.shape == (1, len(CLASSES), 3, 3) and torch.allclose(summed.sum(1), torch.full((1, 3, 3), 2.0))
    for spec in (torch_fcn.spec, keras_fcn.spec):  # both nets: stride 32, window = the kernel, same origin
        assert spec.stride == 32
        assert [geometry.cell_window(i, KERNEL, spec.stride) for i in range(3)] == [(0, 299), (32, 331), (64, 363)]
    # cell (0, 0) of each FCN on the top-left 299 x 299 window is that net's classifier on the window
    window = pixels[..., :KERNEL, :KERNEL]
    with torch.inference_mode():
        for fcn in (torch_fcn, keras_fcn):
            assert (fcn(window)[:, :, 0, 0] - fcn.classifier(fcn.normalize(window))).abs().max() <= 1e-4


@pytest.mark.slow
def test_mixed_ensemble_crops_end_to_end(tmp_path):
    from fcnx.cli import cli
    from fcnx.testing import random_checkpoint
    from fcnx_keras.testing import random_classifier, save_keras

    torch_file = random_checkpoint(tmp_path / "iv3.safetensors", "inception_v3", CLASSES, input_size=KERNEL)
    keras_file = save_keras(
        random_classifier("keras_xception", CLASSES, size=KERNEL), tmp_path / "xc.keras", CLASSES, input_size=KERNEL
    )
    photo = tmp_path / "in" / "photo.png"
    photo.parent.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (360, 420, 3), dtype=np.uint8)).save(photo)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli,
        [
            "crop",
            "--nets",
            "inception_v3,keras_xception",
            "--weights",
            f"inception_v3={torch_file}",
            "--weights",
            f"keras_xception={keras_file}",
            "--category",
            "cannoli",
            "--max-scale",
            "1.5",
            "-q",
            str(photo),
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    [record] = [json.loads(line) for line in (out / "boxes.jsonl").read_text().splitlines()]
    assert record["nets"] == 2 and set(record["net_scores"]) == {"inception_v3", "keras_xception"}
    assert record["category"] == "cannoli" and 0 <= record["x1"] < record["x2"] <= 420
    assert 0 <= record["y1"] < record["y2"] <= 360
    assert Image.open(out / "photo.png").size == (round(record["w"]), round(record["h"]))
