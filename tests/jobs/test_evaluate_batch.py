"""`fcnx evaluate --batch-size N`: originals and crops classified together, with the results of one at a time."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from test_evaluate_suspects import make_dataset
from tiny_backbones import COLOR_CLASSES, random_tiny_checkpoint

from fcnx.cli import cli
from fcnx.engine.ensemble import load_ensemble
from fcnx.io import datasets
from fcnx.io.decoding import load_rgb
from fcnx.jobs.scoring import classify_batch, cut_box, evaluate, squash


@pytest.fixture
def random_nets(tmp_path, tiny_registry):
    """Two tiny nets with seeded random weights (their probabilities differ from image to image) and a dataset."""
    weights = {
        name: random_tiny_checkpoint(tmp_path / f"{name}.safetensors", name, COLOR_CLASSES, seed=k)
        for k, name in enumerate(("tiny0", "tiny43"))
    }
    root = tmp_path / "data"
    make_dataset(root)
    return weights, root


def box_of(item, pixels):
    """A box around the image's square (the only pixels that are not grey), padded by an amount that varies."""
    ys, xs = np.nonzero((pixels != 128).any(axis=2))
    pad = 3 * int(item.path.stem)
    return xs.min() - pad, ys.min() - pad, xs.max() - xs.min() + 1 + 2 * pad, ys.max() - ys.min() + 1 + 3 * pad


def test_batches_give_the_predictions_and_scores_of_one_region_at_a_time(random_nets):
    weights, root = random_nets
    ensemble = load_ensemble(list(weights), {n: str(p) for n, p in weights.items()}, kernel=299, device="cpu")
    items = datasets.open_dataset(root, "test").items
    regions = []
    for item in items:
        pixels = load_rgb(item.path)[0]
        regions += [squash(ensemble, pixels), squash(ensemble, cut_box(pixels, box_of(item, pixels)))]
    one = np.stack([classify_batch(ensemble, [region])[0] for region in regions])
    together = classify_batch(ensemble, regions)
    assert together.shape == (2 * len(items), 2, len(COLOR_CLASSES))
    assert (together.argmax(-1) == one.argmax(-1)).all() and len(set(one.argmax(-1).ravel().tolist())) > 1
    np.testing.assert_allclose(together, one, rtol=0, atol=1e-6)

    results = {size: evaluate(ensemble, items, box_of, batch_size=size) for size in (1, 3, 8, 64)}
    for result in results.values():
        assert result.rows() == results[1].rows()
    assert 0 < results[1].cropped["ensemble"].top1 < len(items)


def test_cli_batch_sizes_write_the_same_evaluation(tmp_path, random_nets):
    weights, root = random_nets
    args = ["evaluate", "--nets", "tiny0,tiny43", "--data", str(root), "--crop", "-q"]
    args += [a for n, p in weights.items() for a in ("--weights", f"{n}={p}")]
    saved = []
    for size in ("1", "4"):
        result = CliRunner().invoke(cli, [*args, "--batch-size", size, "-o", str(tmp_path / f"ev{size}")])
        assert result.exit_code == 0, result.output
        saved.append((tmp_path / f"ev{size}" / "evaluation.json").read_text())
    assert saved[0] == saved[1] and json.loads(saved[0])["rows"][0]["images"] == 10
    result = CliRunner().invoke(cli, [*args, "--batch-size", "0"])
    assert result.exit_code == 2 and "--batch-size" in result.stderr
