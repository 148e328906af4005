"""The review index of a crop or suspects OUTDIR: items, guesses, classes, filters, sort orders, pages."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from fcnx.cli.app import cli
from fcnx.errors import UsageError
from fcnx.review.index import Query, open_index
from fcnx.testing.records import write_synthetic_journal


def test_crop_outdir_items(outdir):
    index = open_index(outdir)
    assert index.kind == "crop" and index.classes == ["pizza", "sushi", "lasagna", "pho"] and index.warnings == []
    first, second, third = (index.item(k).as_dict() for k in range(len(index)))
    assert first["box"] == (300.0, 150.0, 600.0, 450.0) and first["box_kind"] == "tight" and first["heatmap"]
    assert first["overlays"] == {"window": (0.0, 0.0, 900.0, 900.0)} and first["size"] == (1200, 900)
    # the second image has records for two categories: both are guesses, best first; its label's record is the box
    assert second["guesses"] == [
        {"class": "lasagna", "score": 0.7, "votes": "3/3"},
        {"class": "pizza", "score": 0.1, "votes": "0/3"},
    ]
    assert second["found"] is False and second["box"] == (20.0, 30.0, 120.0, 100.0) and not second["heatmap"]
    assert third["size"] == (960, 600) and third["suspect"] is None and third["score"] is None


def test_records_that_are_not_whole_are_skipped_and_named(outdir):
    journal = outdir / "boxes.jsonl"
    lines = journal.read_text().splitlines()
    lines[0] = lines[0].replace('"width": 1200', '"width": "wide"')
    journal.write_text("\n".join(lines) + "\n")
    index = open_index(outdir)
    assert [index.item(k).file for k in range(len(index))] == ["images/pizza/2.jpg", "images/sushi/3.jpg"]
    assert index.warnings == [
        f"{journal}:1: not a crop record (field 'width' has the wrong type or value (str)); skipped"
    ]


def _suspects(outdir, rows):
    (outdir / "suspects.json").write_text(json.dumps({"images": 10, "signal": "graded", "suspects": rows}))


def _row(path, label, other, gap, box=(1, 2, 30, 40)):
    x, y, w, h = box
    return {"path": path, "label": label, "other_category": other, "other_votes": 2, "other_mean_confidence": 0.5,
            "gap": gap, "x": x, "y": y, "w": w, "h": h}  # fmt: skip


def test_suspects_outdir_and_a_crop_outdir_with_suspects(tmp_path, outdir, monkeypatch):
    alone = tmp_path / "suspects"
    alone.mkdir()
    _suspects(alone, [_row("d/a.jpg", "pizza", "sushi", 0.2), _row("d/b.jpg", "pho", "pizza", 0.7), {"path": 3}])
    index = open_index(alone)
    assert index.kind == "suspects" and [index.path(k) for k in range(len(index))] == ["d/a.jpg", "d/b.jpg"]
    assert index.warnings == [f"{alone / 'suspects.json'}: suspect 3 has no valid 'path'; skipped"]
    assert index.item(0).box == (1.0, 2.0, 30.0, 40.0) and index.item(0).guesses == [("sushi", 0.5, "2")]
    assert index.classes == ["pho", "pizza", "sushi"]  # no class list: the labels and guesses
    assert index.select(Query(sort="suspect")).tolist() == [1, 0]
    monkeypatch.chdir(outdir.parent)  # suspects --data data/: its paths are relative, crop's absolute
    _suspects(outdir, [_row("data/images/pizza/2.jpg", "pizza", "sushi", None)])
    both = open_index(outdir)
    assert both.kind == "crop + suspects" and len(both) == 3
    assert both.item(1).suspect == {
        "other": "sushi",
        "votes": 2,
        "confidence": 0.5,
        "gap": None,
        "box": (1.0, 2.0, 30.0, 40.0),
    }
    assert [g[0] for g in both.item(1).guesses] == ["lasagna", "sushi", "pizza"]
    assert both.select(Query(sort="suspect")).tolist() == [1, 0, 2]  # no gap: the other class's confidence


def test_filters_and_sorts(outdir):
    index = open_index(outdir)
    assert index.select(Query()).tolist() == [0, 1, 2]
    assert index.select(Query(sort="confidence")).tolist() == [1, 2, 0]
    assert index.select(Query(sort="confidence-desc")).tolist() == [0, 2, 1]
    assert index.select(Query(sort="class", label="pizza")).tolist() == [0, 1]
    assert index.select(Query(not_found=True)).tolist() == [1]
    index.state[:] = [1, 0, 3]
    index.version += 1
    index.disputed[2] = True
    assert index.select(Query(state="undecided")).tolist() == [1]
    assert index.select(Query(state="decided", sort="confidence")).tolist() == [2, 0]
    assert index.select(Query(state="disputed")).tolist() == [2]
    assert index.counts() == {"undecided": 1, "accepted": 1, "rejected": 0, "relabelled": 1, "disputed": 1}
    with pytest.raises(UsageError, match="unknown sort 'size'; use one of run, suspect"):
        Query(sort="size")
    with pytest.raises(UsageError, match="unknown class 'ramen'"):
        index.select(Query(label="ramen"))


def test_many_records_page_in_the_run_order(tmp_path):
    write_synthetic_journal(tmp_path, 1000, ["a", "b", "c"])
    index = open_index(tmp_path)
    assert len(index) == 1000 and index.classes == ["a", "b", "c"]
    by_class = index.select(Query(sort="class", label="b"))
    assert by_class.tolist() == list(range(1, 1000, 3))
    not_found = index.select(Query(not_found=True))
    assert not_found.tolist() == [k for k in range(1000) if index.item(k).found is False]
    confidences = index.confidence[index.select(Query(sort="confidence"))]
    assert np.all(np.diff(confidences) >= 0)


@pytest.mark.parametrize("asked", [3, 500])  # few paths: a search each; many: every path decoded once
def test_find_all_finds_what_find_finds(tmp_path, asked):
    write_synthetic_journal(tmp_path, 1000, ["a", "b", "c"])
    index = open_index(tmp_path)
    paths = [index.path(k * 7 % 1000) for k in range(asked)] + [str(tmp_path / "images/a/1000.jpg")]
    found = index.find_all(paths)
    assert found == {path: index.find(path) for path in paths}
    assert [found[path] for path in paths] == [k * 7 % 1000 for k in range(asked)] + [None]


def test_an_outdir_of_something_else_is_one_line(tmp_path):
    result = CliRunner().invoke(cli, ["review", str(tmp_path), "--no-browser"])
    assert result.exit_code == 2
    assert result.output == (
        f"Error: {tmp_path}: is neither an fcnx crop output (boxes.jsonl) nor an fcnx suspects output "
        f"(suspects.json): nothing to review\n"
    )


def test_a_plain_crop_run_shows_the_ensembles_top_classes_of_each_image(tmp_path, tiny_registry):
    from image_corpus import square
    from tiny_backbones import color_checkpoint

    from fcnx.review.session import Session

    weights = color_checkpoint(tmp_path / "tiny0.safetensors", "tiny0")
    root = tmp_path / "food"  # a Food-101 root: each image cropped for its label only
    for file in ("red/0", "green/1"):  # a red square filling the image, labelled red, then green
        square(root / "images" / f"{file}.jpg", top=10, left=20, side=100)
    (root / "meta").mkdir()
    (root / "meta" / "classes.txt").write_text("red\ngreen\n")
    (root / "meta" / "train.txt").write_text("red/0\ngreen/1\n")
    (root / "meta" / "test.txt").write_text("")
    out = tmp_path / "out"
    argv = ["crop", "--nets", "tiny0", "--weights", f"tiny0={weights}", str(root), "-o", str(out)]
    result = CliRunner().invoke(cli, [*argv, "-q", "--device", "cpu", "--workers", "0"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (out / "boxes.jsonl").read_text().splitlines()]
    for record in records:  # the whole image: red, then the grey around it (green and blue tie far behind)
        assert [g[0] for g in record["guesses"][:2]] == ["red", "none"] and len(record["guesses"]) == 4
        assert record["guesses"][0][1] > 0.9 and [g[2] for g in record["guesses"]] == [1, 0, 0, 0]
    index = open_index(out)
    red, green = (index.item(k) for k in range(2))
    assert [g[0] for g in green.guesses] == ["green"]  # the label, scored at its box
    assert green.image_guesses[0][0] == "red" and green.image_guesses[0][2] == "1/1"
    assert red.image_guesses == [(c, p, f"{v}/1") for c, p, v in records[0]["guesses"]]
    assert index.classes == ["red", "green", "blue", "none"]  # the dataset's, then the guesses'
    assert index.item(1).as_dict()["image_guesses"][0] == {"class": "red", "score": records[1]["guesses"][0][1],
                                                           "votes": "1/1"}  # fmt: skip
    with Session(index, "ana") as session:  # relabel to the guess: what the page's `g` sends
        decision = session.decide(1, "relabel", label=green.image_guesses[0][0])
    assert (decision.action, decision.label) == ("relabel", "red")
