"""The benchmark dataset generator and the mislabel planter (fcnx.bench.fashion, fcnx bench data/plant-mislabels)."""

from __future__ import annotations

import gzip
import hashlib
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from fcnx.bench import fashion
from fcnx.cli import cli
from fcnx.errors import FcnxError, UsageError
from fcnx.io.discovery import dataset_items

SMALL = fashion.BenchConfig(seed=3, num_classes=4, train_per_class=3, test_per_class=5)


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.GzipFile(path, "wb", mtime=0) as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def fake_source(tmp_path_factory) -> Path:
    """Fashion-MNIST-shaped IDX files: per class a filled rectangle of a class-specific shape."""
    folder = tmp_path_factory.mktemp("fashion")
    for split, per_class in (("train", 8), ("test", 8)):
        labels = np.repeat(np.arange(10), per_class)
        images = np.zeros((len(labels), 28, 28), np.uint8)
        for n, label in enumerate(labels):
            images[n, 4:24, 4 + label : 24 - label // 2] = 200 + n % 50
        images_file, labels_file = fashion.FASHION_FILES[split]
        write_idx(folder / images_file, images)
        write_idx(folder / labels_file, labels)
    return folder


def tree_digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_layout_and_boxes(fake_source, tmp_path):
    out = tmp_path / "bench"
    assert fashion.generate(out, SMALL, fake_source) == {"train": 12, "test": 20}
    classes = (out / "meta" / "classes.txt").read_text().split()
    assert classes == ["t_shirt", "trouser", "pullover", "dress"]
    train, test = dataset_items(out, "train"), dataset_items(out, "test")
    assert len(train) == 12 and len(test) == 20
    assert all(item.path.is_file() and item.label in classes for item in train + test)
    assert {item.label for item in test} == set(classes)
    assert all(Image.open(item.path).size == (56, 56) for item in train)
    boxes = json.loads((out / "boxes.json").read_text())
    assert set(boxes) == {f"{item.label}/{item.path.name}" for item in test}
    for rel, (x, y, w, h) in boxes.items():
        width, height = Image.open(out / "images" / rel).size
        assert x >= 0 and y >= 0 and x + w <= width and y + h <= height
        side = max(w, h)  # the ink is up to the object frame, itself 0.7-1.3 x 56
        assert 10 <= side <= round(1.3 * 56)
        assert min(width, height) >= 2 * 0.7 * 56 - 1 and max(width, height) <= 4 * 1.3 * 56 + 1
        # off-centre: the box centre is away from the canvas centre
        assert np.hypot(x + w / 2 - width / 2, y + h / 2 - height / 2) > 0.05 * min(width, height)
    assert json.loads((out / "meta" / "benchdata.json").read_text())["config"]["seed"] == 3


def test_byte_identical_for_same_seed(fake_source, tmp_path):
    fashion.generate(tmp_path / "a", SMALL, fake_source)
    fashion.generate(tmp_path / "b", SMALL, fake_source)
    a, b = tree_digest(tmp_path / "a"), tree_digest(tmp_path / "b")
    assert a == b and len(a) == 12 + 20 + 5
    other = fashion.BenchConfig(**{**SMALL.__dict__, "seed": 4})
    fashion.generate(tmp_path / "c", other, fake_source)
    assert tree_digest(tmp_path / "c") != a


def test_paint_box_is_the_ink():
    canvas = np.zeros((40, 50, 3), np.float32)
    item = np.zeros((28, 28), np.uint8)
    item[7:21, 14:28] = 255  # ink in rows 7-20, columns 14-27 of the 28 x 28 frame
    box = fashion.paint(canvas, item, 10, 5, 28, 28, np.full(3, 255, np.float32))
    rows, cols = np.nonzero(canvas[..., 0] > fashion.INK * 255)
    assert box == (10 + 14, 5 + 7, 14, 14) == (cols.min(), rows.min(), np.ptp(cols) + 1, np.ptp(rows) + 1)
    # clipped at the canvas border
    canvas = np.zeros((20, 20, 3), np.float32)
    assert fashion.paint(canvas, item, -14, 10, 28, 28, np.full(3, 255, np.float32)) == (0, 17, 14, 3)


def test_missing_fashion_mnist_is_one_line_error(tmp_path):
    with pytest.raises(FcnxError, match="dataset-fashion-mnist") as info:
        fashion.generate(tmp_path / "x", SMALL, tmp_path)
    assert "\n" not in str(info.value) and "train-images-idx3-ubyte.gz" in str(info.value)
    result = CliRunner().invoke(cli, ["bench", "data", "-o", str(tmp_path / "y"), "--source", str(tmp_path)])
    assert result.exit_code == 1 and "apt-get install dataset-fashion-mnist" in result.output
    assert not (tmp_path / "y").exists()
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip")
    with pytest.raises(FcnxError, match="gzipped IDX"):
        fashion.read_idx(tmp_path / "train-images-idx3-ubyte.gz")


def test_refuses_non_empty_output(fake_source, tmp_path):
    (tmp_path / "keep.txt").write_text("user data")
    with pytest.raises(UsageError, match="not an empty folder"):
        fashion.generate(tmp_path, SMALL, fake_source)
    assert (tmp_path / "keep.txt").read_text() == "user data"


def test_plant_mislabels(fake_source, tmp_path):
    root = tmp_path / "bench"
    fashion.generate(root, SMALL, fake_source)
    before = tree_digest(root)
    result = CliRunner().invoke(
        cli, ["bench", "plant-mislabels", str(root), "-o", str(tmp_path / "m"), "--share", "0.25", "--seed", "1"]
    )
    assert result.exit_code == 0, result.output
    assert tree_digest(root) == before  # the source is untouched
    record = json.loads((tmp_path / "m" / "meta" / "mislabels.json").read_text())
    planted = record["planted"]
    assert len(planted) == 5 and record["share"] == 0.25
    labels = {f"{item.label}/{item.path.name}": item.label for item in dataset_items(tmp_path / "m", "test")}
    original = json.loads((root / "boxes.json").read_text())
    boxes = json.loads((tmp_path / "m" / "boxes.json").read_text())
    assert set(boxes) == set(labels)
    for rel, entry in planted.items():
        assert labels[rel] == entry["planted"] != entry["true"]
        assert boxes[rel] == original[f"{entry['true']}/{rel.split('/')[1]}"]
    # seeded: the same planting again
    again = fashion.plant_mislabels(root, tmp_path / "m2", 0.25, seed=1)
    assert again == planted
    with pytest.raises(UsageError, match="output exists"):
        fashion.plant_mislabels(root, tmp_path / "m2", 0.25)


def test_plant_mislabels_among_training_images(fake_source, tmp_path):
    root = tmp_path / "bench"
    fashion.generate(root, SMALL, fake_source)
    result = CliRunner().invoke(
        cli, ["bench", "plant-mislabels", str(root), "-o", str(tmp_path / "m"), "--share", "0.25", "--split", "train"]
    )
    assert result.exit_code == 0 and "train images mislabelled" in result.output, result.output
    record = json.loads((tmp_path / "m" / "meta" / "mislabels.json").read_text())
    train = (root / "meta" / "train.txt").read_text().split()
    assert record["split"] == "train" and len(record["planted"]) == round(0.25 * len(train))
    labels = {f"{item.label}/{item.path.name}": item.label for item in dataset_items(tmp_path / "m", "train")}
    for rel, entry in record["planted"].items():
        assert labels[rel] == entry["planted"] != entry["true"] and f"{entry['true']}/{rel.split('/')[1]}" in train
    assert len(labels) == len(train)
    for name in ("test.txt", "classes.txt"):  # the test canvases and their boxes are untouched
        assert (tmp_path / "m" / "meta" / name).read_bytes() == (root / "meta" / name).read_bytes()
    assert (tmp_path / "m" / "boxes.json").read_bytes() == (root / "boxes.json").read_bytes()


@pytest.mark.skipif(not fashion.FASHION_MNIST.is_dir(), reason="apt-get install dataset-fashion-mnist")
def test_real_fashion_mnist(tmp_path):
    images, labels = fashion.load_fashion_mnist("test")
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,) and set(labels.tolist()) == set(range(10))
    cfg = fashion.BenchConfig(seed=0, train_per_class=2, test_per_class=2)
    assert fashion.generate(tmp_path / "real", cfg) == {"train": 20, "test": 20}
