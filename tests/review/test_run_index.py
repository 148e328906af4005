"""The review index written by the run itself: ``fcnx crop`` builds it from the records it reads for its table and
``fcnx suspects`` from its rows, so that the first ``fcnx review`` reads neither; it is always the index a review
would build from scratch, also after a resumed run, and the run falls back to a scan where its own records do not
tile the journal."""

from __future__ import annotations

import json

import pytest
from image_corpus import square
from tiny_backbones import color_checkpoint

from fcnx.io import review_index as columns_module
from fcnx.io.journal import CropJournal, dump_line
from fcnx.io.record import CropRecord
from fcnx.io.review_index import CACHE, indexed_records
from fcnx.jobs.crop import CropOptions, run_crop
from fcnx.review.index import SORTS, Query, open_index
from fcnx.testing.records import crop_record, write_synthetic_journal

NETS = ["tiny0", "tiny43"]


def _view(index):
    """Everything a review shows of ``index``: its items, in every sort order, its classes and warnings."""
    items = [index.item(k).as_dict() for k in range(len(index))]
    orders = {sort: index.select(Query(sort=sort)).tolist() for sort in SORTS}
    view = items, orders, index.classes, index.warnings, index.kind
    index.close()
    return view


def _fresh(outdir):
    """The index built from scratch (no kept index; the kept one put back)."""
    kept = (outdir / CACHE).read_bytes()
    (outdir / CACHE).unlink()
    view = _view(open_index(outdir))
    (outdir / CACHE).write_bytes(kept)
    return view


@pytest.fixture
def reads(monkeypatch):
    """What builds were done: ``scan`` (of boxes.jsonl, with where it started) and ``suspects`` (suspects.json)."""
    done: list[tuple[str, int]] = []
    scan, merge = columns_module._Builder.scan, columns_module._Builder.merge_suspects

    def spy_scan(self, journal, data, offset, line):
        done.append(("scan", offset))
        return scan(self, journal, data, offset, line)

    def spy_merge(self, path):
        done.append(("suspects", 0))
        return merge(self, path)

    monkeypatch.setattr(columns_module._Builder, "scan", spy_scan)
    monkeypatch.setattr(columns_module._Builder, "merge_suspects", spy_merge)
    return done


@pytest.fixture
def setup(tmp_path, tiny_registry):
    weights = {n: str(color_checkpoint(tmp_path / f"{n}.safetensors", n)) for n in NETS}
    photos = tmp_path / "photos"
    for k in range(4):
        square(photos / f"{k}.png", top=10 * k)
    options = CropOptions(nets=NETS, weights=weights, categories=["red", "green"], max_scale=1.5, workers=0)
    return photos, options


def test_a_crop_run_keeps_the_index_and_review_opens_it_without_reading_a_record(tmp_path, setup, reads):
    photos, options = setup
    out = tmp_path / "out"
    job = run_crop([photos], out, options)
    next(iter(job))
    job.stop(KeyboardInterrupt())  # a stopped run keeps the index of what it wrote
    first = len({json.loads(line)["path"] for line in (out / "boxes.jsonl").read_text().splitlines()})
    assert (out / CACHE).is_file() and reads == []  # built from the table's records: boxes.jsonl not scanned
    assert len(open_index(out)) == first and reads == []
    assert run_crop([photos], out, options).run().done == 4 - first  # resumed: the index covers every image
    assert reads == []
    index = open_index(out)
    assert reads == [] and len(index) == 4 and index.kind == "crop"  # opened as kept: no record read
    assert sorted(index.path(k) for k in range(4)) == [str(photos / f"{k}.png") for k in range(4)]
    assert [index.path(k) for k in range(4)] == [str(photos / f"{k}.png") for k in range(4)]  # the run's order
    assert {guess[0] for guess in index.item(0).guesses} == {"red", "green"}
    assert _view(index) == _fresh(out)


def test_a_suspects_run_keeps_the_index(tmp_path, tiny_registry, reads):
    from fcnx import SuspectsOptions, run_suspects

    root = tmp_path / "data"
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "classes.txt").write_text("red\ngreen\n")
    names = []
    for k, (label, top) in enumerate([("red", 0), ("red", 20), ("green", 40)]):  # the green one is red
        square(root / "images" / label / f"{k}.png", top=top)
        names.append(f"{label}/{k}")
    (root / "meta" / "test.txt").write_text("".join(f"{n}.png\n" for n in names))
    weights = {name: str(color_checkpoint(tmp_path / f"{name}.safetensors", name)) for name in NETS}
    out = tmp_path / "out"
    found = run_suspects(root, SuspectsOptions(NETS, weights, 299), out).run()
    assert [s.path.name for s in found] == ["2.png"] and reads == [("suspects", 0)]
    index = open_index(out)
    assert reads == [("suspects", 0)] and index.kind == "suspects" and len(index) == 1  # nothing read again
    assert index.item(0).suspect["other"] == "red" and index.item(0).label == "green"
    assert _view(index) == _fresh(out)


def _journal(outdir, count):
    write_synthetic_journal(outdir, count, ["a", "b", "c"])
    journal = CropJournal(outdir / "boxes.jsonl", outdir / "aside.jsonl")
    journal.load()
    return journal


def _keep(outdir, journal):
    return list(indexed_records(outdir, journal, outdir / "suspects.json"))


def test_the_run_index_is_the_scan_of_its_journal(tmp_path, reads):
    journal = _journal(tmp_path, 40)
    again = crop_record(str(tmp_path / "images/b/1.jpg"), "images/b/1.jpg", "b", (512, 384), (1.0, 2.0, 3.0, 4.0))
    other = {**again, "category": "c", "mean_confidence": 0.95}
    journal.append([CropRecord.from_json(again), CropRecord.from_json(other)])  # an image redone with two categories
    journal.compact()
    records = _keep(tmp_path, journal)
    assert records == list(journal.records) and len(records) == 41 and reads == []
    index = open_index(tmp_path)
    assert reads == [] and len(index) == 40 and index.path(39) == again["path"]
    assert index.item(39).box == (1.0, 2.0, 3.0, 4.0) and [g[0] for g in index.item(39).guesses] == ["c", "b"]
    assert index.columns.crop["line"] == 40 and _view(index) == _fresh(tmp_path)  # its two lines: 40, 41
    with (tmp_path / "boxes.jsonl").open("ab") as file:  # the journal goes on: read from its last image
        file.write(dump_line(crop_record(str(tmp_path / "x.jpg"), "x.jpg", "a", (9, 9), (0.0, 0.0, 2.0, 2.0))))
    index = open_index(tmp_path)
    assert len(index) == 41 and reads[-1] == ("scan", index.columns.start[39])
    assert _view(index) == _fresh(tmp_path)


def test_a_journal_that_its_records_do_not_tile_is_scanned(tmp_path, reads):
    journal = _journal(tmp_path, 12)
    redone = crop_record(str(tmp_path / "images/a/0.jpg"), "images/a/0.jpg", "a", (512, 384), (5.0, 5.0, 9.0, 9.0))
    journal.append(
        [CropRecord.from_json(redone)]
    )  # not compacted (as when the compaction failed): the first group is superseded
    _keep(tmp_path, journal)
    assert reads == [("scan", 0)]  # not the records' own order: the review's scan of the file
    index = open_index(tmp_path)
    assert reads == [("scan", 0)] and len(index) == 12 and index.item(0).box == (5.0, 5.0, 9.0, 9.0)
    assert _view(index) == _fresh(tmp_path)
