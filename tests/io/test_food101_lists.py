"""Food-101 meta lists as users write them: any image suffix, BOM and CRLF, duplicates, train/test overlap.

Listing never reads the images, so the files here are a few bytes each.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fcnx.errors import UsageError
from fcnx.io import datasets
from fcnx.io.discovery import dataset_items


def make_root(root: Path, files: dict[str, list[str]], train: str, test: str, classes: str = "a\nb\n") -> Path:
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "classes.txt").write_text(classes, newline="")
    for name, names in files.items():
        (root / "images" / name).mkdir(parents=True)
        for file in names:
            (root / "images" / name / file).write_bytes(b"x")
    (root / "meta" / "train.txt").write_text(train, newline="")
    (root / "meta" / "test.txt").write_text(test, newline="")
    return root


def rels(data: datasets.LabelledImages) -> list[str]:
    return [item.rel.as_posix() for item in data.items]


def test_lines_find_their_file_whatever_the_suffix(tmp_path):
    files = {"a": ["1.jpg", "1", "2.png", "3.JPG", "4.jpeg", "5.webp", "6.Png"], "b": ["7.jpg", "8.png"]}
    train = "a/1\na/2\na/3\na/4\na/5.webp\na/6\nb/7.jpg\nb/8.jpg\n"  # b/8.jpg names a PNG
    data = datasets.open_dataset(make_root(tmp_path / "r", files, train, "b/7\n"), "train")
    # the exact name comes first ("a/1" is the file "1"), then <id>.jpg, then other suffixes in any case
    assert rels(data) == [
        "images/a/1",
        "images/a/2.png",
        "images/a/3.JPG",
        "images/a/4.jpeg",
        "images/a/5.webp",
        "images/a/6.Png",
        "images/b/7.jpg",
        "images/b/8.png",
    ]
    assert all(item.path.is_file() for item in data.items) and not data.missing
    assert [item.label for item in data.items] == ["a"] * 6 + ["b"] * 2
    (tmp_path / "r" / "images" / "a" / "1").unlink()
    assert rels(datasets.open_dataset(tmp_path / "r", "train"))[0] == "images/a/1.jpg"


def test_bom_and_crlf_lists_parse(tmp_path):
    bom = "\ufeff"
    root = make_root(
        tmp_path / "r",
        {"a": ["1.jpg", "2.jpg"], "b": ["3.jpg"]},
        f"{bom}a/1\r\nb/3\r\n",
        f"{bom}a/2\r\n",
        classes=f"{bom}a\r\nb\r\n",
    )
    data = datasets.open_dataset(root, "all")
    assert data.classes == ["a", "b"] and rels(data) == ["images/a/1.jpg", "images/b/3.jpg", "images/a/2.jpg"]
    assert not data.warnings and not data.missing


def test_a_line_without_file_is_skipped_with_its_meta_file_and_line(tmp_path):
    root = make_root(tmp_path / "r", {"a": ["1.jpg"], "b": ["2.png"]}, "a/1\n\nb/2\na/9\n", "b/2\n")
    data = datasets.open_dataset(root, "train")
    assert rels(data) == ["images/a/1.jpg", "images/b/2.png"] and data.missing == [root / "images/a/9.jpg"]
    [line] = data.missing_lines
    assert line == (
        f"{root / 'images/a/9.jpg'}: listed in meta but no such file, nor with another image suffix "
        f"({root / 'meta/train.txt'}:4: 'a/9')"
    )
    # crop's listing keeps the missing file (it fails there as a missing file, named)
    assert [i.rel.as_posix() for i in dataset_items(root, "train")][-1] == "images/a/9.jpg"


def test_duplicates_and_leaks_warn_once_with_counts_and_count_once(tmp_path):
    files = {"a": [f"{k}.jpg" for k in range(6)], "b": ["6.png"]}
    train = "a/0\na/1\na/0\na/1.jpg\na/0\nb/6\na/2\n"  # a/0 three times, a/1 twice (once with its suffix)
    root = make_root(tmp_path / "r", files, train, "a/3\na/4\na/2\nb/6.png\na/4\n")
    data = datasets.open_dataset(root, "train")
    assert rels(data) == ["images/a/0.jpg", "images/a/1.jpg", "images/b/6.png", "images/a/2.jpg"]
    assert data.warnings == [
        f"{root / 'meta/train.txt'}: 3 duplicate line(s), each image used once (e.g. line 3: 'a/0')",
        "2 image(s) listed in both meta/train.txt and meta/test.txt: test images leak into training (e.g. 'a/2')",
    ]
    test = datasets.open_dataset(root, "test")
    assert rels(test) == ["images/a/3.jpg", "images/a/4.jpg", "images/a/2.jpg", "images/b/6.png"]
    assert len(test.warnings) == 2 and "1 duplicate line(s)" in test.warnings[0] and "leak" in test.warnings[1]
    everything = datasets.open_dataset(root, "all")
    assert rels(everything) == rels(data) + ["images/a/3.jpg", "images/a/4.jpg"]  # each file once
    assert len(everything.warnings) == 3


def test_traversal_is_still_refused(tmp_path):
    root = make_root(tmp_path / "r", {"a": ["1.jpg"], "b": ["2.jpg"]}, "a/1\na/../../../etc/passwd\n", "b/2\n")
    with pytest.raises(UsageError, match=r"train\.txt:2: refusing the path 'a/\.\./\.\./\.\./etc/passwd'"):
        datasets.open_dataset(root, "train")
    with pytest.raises(UsageError, match="refusing the path"):  # also from the list not read for the split
        datasets.open_dataset(root, "test")


def test_class_folders_skip_hidden_folders_and_never_follow_a_link_loop(tmp_path):
    from PIL import Image

    for name in ("cat", "dog", ".ipynb_checkpoints"):
        (tmp_path / name).mkdir()
        Image.new("RGB", (8, 8)).save(tmp_path / name / "a.png")
    (tmp_path / "cat" / "loop").symlink_to(tmp_path / "cat", target_is_directory=True)
    data = datasets.open_dataset(tmp_path, "all")
    assert data.classes == ["cat", "dog"]
    assert [i.rel.as_posix() for i in data.items] == ["cat/a.png", "dog/a.png"]
