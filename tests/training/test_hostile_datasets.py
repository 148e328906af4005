"""Hostile files in class folders and Food-101 roots: listed, then refused one line each by the training loader."""

from __future__ import annotations

import os

import pytest
from image_corpus import chunk_bomb, lying_jpeg, square

from fcnx.io import datasets as listing
from fcnx.training import datasets

pytestmark = pytest.mark.usefixtures("no_hang")


@pytest.mark.parametrize("train", [True, False], ids=["train", "validation"])
def test_class_folders_with_a_fifo_a_bomb_and_a_liar_load_the_good_images_and_flag_the_rest(tmp_path, train):
    square(tmp_path / "red" / "good.png")
    square(tmp_path / "green" / "good.png")
    square(tmp_path / "red" / os.fsdecode(b"caf\xe9.png"))
    os.mkfifo(tmp_path / "red" / "pipe.jpg")
    chunk_bomb(tmp_path / "red" / "bomb.png", b"iTXt")
    lying_jpeg(tmp_path / "green" / "liar.jpg", 9000, 9000)
    dataset = listing.open_dataset(tmp_path, "train")
    names = {item.path.name: k for k, item in enumerate(dataset.items)}
    assert (
        set(names) == {"good.png", os.fsdecode(b"caf\xe9.png"), "pipe.jpg", "bomb.png", "liar.jpg"}
        and len(dataset.items) == 6
    )
    loader = datasets.ImageDataset(dataset.items, dataset.classes, 32, train=train)
    labels = {dataset.items[k].path.name: loader[k][1] for k in range(len(loader))}
    assert {name for name, label in labels.items() if label == datasets.UNREADABLE} == {
        "pipe.jpg",
        "bomb.png",
        "liar.jpg",
    }
    assert loader[names[os.fsdecode(b"caf\xe9.png")]][0].shape == (3, 32, 32)
