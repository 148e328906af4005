"""Crops as a training transform: `fcnx.training.transforms` (torchvision v2) and `fcnx train --crops`."""

from __future__ import annotations

import csv
import json
import random

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image, ImageDraw
from tiny_train_backbone import COLORS, NAME, make_food101
from torchvision import tv_tensors

from fcnx.cli import cli
from fcnx.engine.ensemble import resize
from fcnx.errors import UsageError
from fcnx.io import datasets as listing
from fcnx.io.decoding import load_rgb
from fcnx.jobs.scoring import cut_box, read_boxes
from fcnx.method.geometry import pixel_box
from fcnx.training import datasets
from fcnx.training.transforms import BoxCrops, BoxCutter, CropToBox, jittered_box


def write_boxes(path, records) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def food_boxes(root, out, skip: int = 0):
    """A boxes.jsonl for the Food-101 test root: a seeded box per image (all but the first ``skip``)."""
    rng = random.Random(3)
    items = listing.open_dataset(root, "all").items
    records = []
    for item in items[skip:]:
        x, y = rng.uniform(0, 30), rng.uniform(0, 25)
        records.append({"path": str(item.path), "category": item.label, "x": x, "y": y, "w": 40.5, "h": 37.25})
    write_boxes(out, records)
    return items, records


def test_jittered_box_is_the_crop_without_jitter_and_seeded_within_bounds():
    box, size = (10.4, 20.6, 30.0, 24.5), (60, 80)
    assert jittered_box(box, size) == pixel_box(box, size)
    draws = [jittered_box(box, size, 0.2, (0.8, 1.25), torch.Generator().manual_seed(s)) for s in range(50)]
    assert draws[:5] == [jittered_box(box, size, 0.2, (0.8, 1.25), torch.Generator().manual_seed(s)) for s in range(5)]
    assert len(set(draws)) > 40
    for x1, y1, x2, y2 in draws:
        assert 0 <= x1 < x2 <= 80 and 0 <= y1 < y2 <= 60
        assert abs((x1 + x2) / 2 - 25.4) <= 0.2 * 30 + 1 and abs((y1 + y2) / 2 - 32.85) <= 0.2 * 24.5 + 1
        assert x2 - x1 <= 1.25 * 30 + 1 and (x2 - x1 >= 0.8 * 30 - 1 or x1 == 0 or x2 == 80)


def test_crop_to_box_crops_image_and_boxes_and_passes_labels_through():
    image = tv_tensors.Image(torch.arange(3 * 40 * 50, dtype=torch.int32).reshape(3, 40, 50) % 251)
    box = tv_tensors.BoundingBoxes([[12.4, 5.6, 20.0, 18.2]], format="XYWH", canvas_size=(40, 50))
    cropped, boxes, label = CropToBox()(image, box, 7)
    x1, y1, x2, y2 = pixel_box((12.4, 5.6, 20.0, 18.2), (40, 50))
    assert torch.equal(cropped, image[:, y1:y2, x1:x2]) and label == 7
    assert boxes.canvas_size == (y2 - y1, x2 - x1)
    xyxy = tv_tensors.BoundingBoxes([[12.4, 5.6, 32.4, 23.8]], format="XYXY", canvas_size=(40, 50))
    assert torch.equal(CropToBox()(image, xyxy)[0], cropped)  # any box format
    with pytest.raises(ValueError, match="BoundingBoxes"):
        CropToBox()(image)
    with pytest.raises(UsageError):
        CropToBox(scale=(1.2, 0.9))


def test_box_crops_dataset_cuts_each_image_as_evaluate_does(tmp_path):
    root = make_food101(tmp_path / "food", train=3, test=1)
    items, records = food_boxes(root, tmp_path / "boxes.jsonl")
    data = BoxCrops(root, tmp_path / "boxes.jsonl", split="train")
    assert len(data) == 9 and data.classes == list(COLORS)
    for k in (0, 4, 8):
        image, label = data[k]
        pixels = load_rgb(data.items[k].path)[0]
        record = next(r for r in records if r["path"] == str(data.items[k].path))
        expected = cut_box(pixels, (record["x"], record["y"], record["w"], record["h"]))
        assert np.array_equal(image.permute(1, 2, 0).numpy(), expected) and label == list(COLORS).index(
            record["category"]
        )

    food_boxes(root, tmp_path / "few.jsonl", skip=2)
    with pytest.raises(UsageError, match="2 image"):
        BoxCrops(root, tmp_path / "few.jsonl")
    assert [i.path for i in BoxCrops(root, tmp_path / "few.jsonl", skip_missing=True).without_box] == [
        i.path for i in items[:2]
    ]


def test_validation_crops_are_the_regions_evaluate_scores(tmp_path):
    root = make_food101(tmp_path / "food", train=2, test=1)
    items, _ = food_boxes(root, tmp_path / "boxes.jsonl")
    index = read_boxes(tmp_path / "boxes.jsonl")
    boxes = [index.find(item) for item in items]
    val = datasets.ImageDataset(items, list(COLORS), 64, train=False, cut=BoxCutter(boxes, 0.3, (0.5, 1.5)))
    for k in (0, 5):
        pixels = torch.from_numpy(np.ascontiguousarray(cut_box(load_rgb(items[k].path)[0], boxes[k])))
        assert torch.equal(val[k][0], resize(pixels.permute(2, 0, 1)[None], (64, 64))[0].float())


def two_disc_folders(root, per_class: int = 16, seed: int = 5):
    """Class folders whose images hold a disc of their class's colour and one of another class's colour;
    the box around the first is written to ``root/../boxes.jsonl``. Only the box tells the class."""
    rng = random.Random(seed)
    records = []
    names = list(COLORS)
    for name in names:
        (root / name).mkdir(parents=True)
        for k in range(per_class):
            noise = np.random.default_rng(rng.randrange(2**32)).integers(90, 160, (80, 80, 3), dtype=np.uint8)
            image = Image.fromarray(noise)
            draw = ImageDraw.Draw(image)
            left = rng.random() < 0.5
            spots = [(20, rng.randrange(14, 66)), (60, rng.randrange(14, 66))]
            (x, y), (ox, oy) = spots if left else spots[::-1]
            other = COLORS[rng.choice([n for n in names if n != name])]
            draw.ellipse([x - 12, y - 12, x + 12, y + 12], fill=COLORS[name])
            draw.ellipse([ox - 12, oy - 12, ox + 12, oy + 12], fill=other)
            path = root / name / f"{k}.png"
            image.save(path)
            records.append({"path": str(path), "category": name, "x": x - 18, "y": y - 18, "w": 36, "h": 36})
    write_boxes(root.parent / "boxes.jsonl", records)
    return root


def test_training_on_crops_learns_what_the_originals_cannot_tell(tmp_path, tiny_train):
    data = two_disc_folders(tmp_path / "data")
    common = ["train", "--net", NAME, "--data", data, "--size", "64", "--weights", "none", "--batch-size", "8"]
    common += ["--workers", "0", "--val-fraction", "0.25", "--schedule", "all", "--epochs", "8", "--no-augment", "-q"]
    best = {}
    for name, extra in (("original", []), ("crops", ["--crops", tmp_path / "boxes.jsonl"])):
        result = CliRunner().invoke(cli, [str(a) for a in [*common, "-o", tmp_path / name, *extra]])
        assert result.exit_code == 0, result.output
        best[name] = max(float(r["val_top1"]) for r in csv.DictReader((tmp_path / name / "metrics.csv").open()))
    assert best["crops"] >= 0.9 and best["crops"] - best["original"] >= 0.25, best


def test_train_crops_skips_and_lists_images_without_a_box(tmp_path, tiny_train):
    root = make_food101(tmp_path / "food", train=4, test=1)
    items, _ = food_boxes(root, tmp_path / "boxes.jsonl", skip=1)
    args = ["train", "--net", NAME, "--data", root, "-o", tmp_path / "run", "--size", "64", "--weights", "none"]
    args += ["--workers", "0", "--epochs", "1", "--schedule", "all", "--crops", tmp_path / "boxes.jsonl", "-q"]
    args += ["--crop-jitter", "0.1", "--crop-scale", "0.2"]
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 1, result.output
    assert f"error: {items[0].path}: no box in" in result.output
    assert str(items[0].path) in (tmp_path / "run" / "skipped.txt").read_text()
    assert (tmp_path / "run" / "best.safetensors").is_file()

    write_boxes(
        tmp_path / "other.jsonl", [{"path": "/elsewhere.jpg", "category": "red", "x": 0, "y": 0, "w": 5, "h": 5}]
    )
    args[args.index("-o") + 1] = tmp_path / "run2"
    args[args.index(tmp_path / "boxes.jsonl")] = tmp_path / "other.jsonl"
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 2 and "has a box here (wrong file?)" in result.output
