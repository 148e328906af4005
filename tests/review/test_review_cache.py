"""The review index kept in OUTDIR: used while the run's files are unchanged, read on top of when boxes.jsonl only
grew, rebuilt when they changed or it is not whole; never different from an index built from scratch."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from fcnx.errors import UsageError
from fcnx.io import review_index as columns_module
from fcnx.io.journal import dump_line
from fcnx.io.review_index import _ARRAYS, CACHE
from fcnx.review.app import create_app
from fcnx.review.index import SORTS, Query, open_index
from fcnx.review.session import Session
from fcnx.testing.records import crop_record, write_synthetic_journal

CLASSES = ["a", "b", "c", "d"]


def _view(index):
    """Everything a review shows of ``index``: its items, in every sort order, its classes and warnings."""
    items = [index.item(k).as_dict() for k in range(len(index))]
    orders = {sort: index.select(Query(sort=sort)).tolist() for sort in SORTS}
    return items, orders, index.classes, index.warnings, index.kind


def _fresh(outdir):
    """The index built from scratch (no kept index)."""
    (outdir / CACHE).unlink(missing_ok=True)
    index = open_index(outdir)
    (outdir / CACHE).unlink()
    return _view(index)


@pytest.fixture
def scans(monkeypatch):
    """The (offset, line) each scan of boxes.jsonl starts at."""
    started = []
    scan = columns_module._Builder.scan

    def spy(self, journal, data, offset, line):
        started.append((offset, line))
        return scan(self, journal, data, offset, line)

    monkeypatch.setattr(columns_module._Builder, "scan", spy)
    return started


def test_the_kept_index_opens_as_the_run_is_without_reading_it(tmp_path, scans):
    journal = write_synthetic_journal(tmp_path, 300, CLASSES)
    lines = journal.read_bytes().splitlines(keepends=True)
    lines[7] = b'{"path": 7}\n'  # a line that is not a record: named, cold and warm
    journal.write_bytes(b"".join(lines))
    cold = open_index(tmp_path)
    assert (tmp_path / CACHE).is_file() and scans == [(0, 1)]
    assert cold.warnings == [
        f"{journal}:8: not a crop record (field 'path' has the wrong type or value (int)); skipped"
    ]
    warm = open_index(tmp_path)
    assert scans == [(0, 1)]  # boxes.jsonl was not read again
    assert _view(warm) == _view(cold) == _fresh(tmp_path)
    assert len(warm) == 299 and warm.find(str(tmp_path / "images/b/1.jpg")) == 1 and warm.find("nope") is None


def test_a_grown_journal_is_read_from_where_it_grew(tmp_path, scans):
    journal = write_synthetic_journal(tmp_path, 50, CLASSES)
    open_index(tmp_path)
    last_group = len(journal.read_bytes()) - len(journal.read_bytes().splitlines(keepends=True)[-1])
    redone = crop_record(str(tmp_path / "images/c/2.jpg"), "images/c/2.jpg", "c", (512, 384), (1.0, 2.0, 3.0, 4.0))
    new = crop_record(str(tmp_path / "new.jpg"), "new.jpg", "e", (64, 64), (0.0, 0.0, 8.0, 8.0), confidence=0.01)
    with journal.open("ab") as file:  # a crop run going on: an image redone, a new one, a line cut by a kill
        file.write(dump_line(redone) + dump_line(new) + b'{"path": "cut')
    grown = open_index(tmp_path)
    assert scans[1] == (last_group, 50)  # only the last group again, then what was added
    assert len(grown) == 51 and grown.item(2).box == (1.0, 2.0, 3.0, 4.0) and grown.path(50).endswith("new.jpg")
    assert grown.warnings == [f"{journal}: the last line is cut short (a killed run?), dropped"]
    assert grown.classes == [*CLASSES, "e"] and grown.select(Query(sort="confidence")).tolist()[0] == 50
    assert _view(grown) == _fresh(tmp_path)


def test_a_changed_journal_or_suspects_file_is_read_anew(tmp_path, scans):
    journal = write_synthetic_journal(tmp_path, 20, CLASSES)
    open_index(tmp_path)
    data = journal.read_bytes()
    journal.write_bytes(data.replace(b'"label": "a"', b'"label": "d"', 1))  # same size, rewritten in place
    changed = open_index(tmp_path)
    assert scans == [(0, 1), (0, 1)] and changed.item(0).label == "d"
    row = {"path": str(tmp_path / "images/b/1.jpg"), "label": "b", "other_category": "z", "other_votes": 2,
           "other_mean_confidence": 0.5, "gap": 0.25, "x": 1, "y": 2, "w": 3, "h": 4}  # fmt: skip
    (tmp_path / "suspects.json").write_text(json.dumps({"suspects": [row]}))
    with_suspects = open_index(tmp_path)
    assert with_suspects.kind == "crop + suspects" and with_suspects.item(1).suspect["other"] == "z"
    assert with_suspects.select(Query(sort="suspect")).tolist()[0] == 1 and "z" in with_suspects.classes
    assert scans[2][0] > 0  # boxes.jsonl unchanged: its crop part kept, the suspects merged again
    assert _view(with_suspects) == _fresh(tmp_path)
    os.utime(tmp_path / "suspects.json", ns=(1, 1))
    assert _view(open_index(tmp_path)) == _fresh(tmp_path)


@pytest.mark.parametrize(
    "spoil",
    [
        lambda data: data[:-3],  # cut
        lambda data: data[:-1] + bytes([data[-1] ^ 1]),  # a bit flipped in the arrays
        lambda data: data.replace(b'"names": ["a"', b'"names": ["x"'),  # the header altered
        lambda data: b"",
        lambda data: b"fcnx-review-index 1\nzz\n{}\n",
        lambda data: data.replace(b"fcnx-review-index 1", b"fcnx-review-index 9"),
    ],
)
def test_a_kept_index_that_is_not_whole_is_rebuilt(tmp_path, scans, spoil):
    write_synthetic_journal(tmp_path, 30, CLASSES)
    cold = _view(open_index(tmp_path))
    kept = tmp_path / CACHE
    spoiled = spoil(kept.read_bytes())
    assert spoiled != kept.read_bytes()
    kept.write_bytes(spoiled)
    assert _view(open_index(tmp_path)) == cold and scans == [(0, 1), (0, 1)]
    assert kept.read_bytes() != spoiled  # kept anew


def test_a_kept_index_of_another_run_is_not_used(tmp_path, scans):
    for name, seed in (("one", 1), ("two", 2)):
        write_synthetic_journal(tmp_path / name, 30, CLASSES, seed=seed)
        open_index(tmp_path / name)
    (tmp_path / "two" / CACHE).write_bytes((tmp_path / "one" / CACHE).read_bytes())
    view = _view(open_index(tmp_path / "two"))
    assert len(scans) == 3 and view == _fresh(tmp_path / "two")


def test_consistency_checks_catch_arrays_that_do_not_fit(tmp_path):
    write_synthetic_journal(tmp_path, 10, CLASSES)
    columns = open_index(tmp_path).columns
    assert columns_module._consistent(columns) and set(_ARRAYS) >= {"path_order", "start", "label"}
    columns.path_order = np.zeros(10, dtype=np.int64)
    assert not columns_module._consistent(columns)


def test_records_rewritten_while_reviewing_are_refused_not_shown(tmp_path):
    journal = write_synthetic_journal(tmp_path, 5, CLASSES)
    index = open_index(tmp_path)
    lines = journal.read_bytes().splitlines(keepends=True)
    with journal.open("r+b") as file:  # the same file rewritten in place, records in another order
        file.write(b"".join([lines[1], lines[0], *lines[2:]]))
    with pytest.raises(UsageError, match="changed while reviewing"):
        index.item(0)
    assert index.item(2).path == str(tmp_path / "images/c/2.jpg")
    with Session(index, "ana") as session:  # the page says so, and shows nothing
        response = create_app(session).test_client().get("/api/page")
    assert response.status_code == 409 and "changed while reviewing" in response.get_json()["error"]
    index.close()


def test_an_index_that_cannot_be_kept_is_built_each_time(tmp_path, scans):
    write_synthetic_journal(tmp_path, 10, CLASSES)
    (tmp_path / CACHE).mkdir()  # as a folder that cannot be written to would: the write fails
    assert len(open_index(tmp_path)) == 10 and len(open_index(tmp_path)) == 10 and len(scans) == 2
    assert (tmp_path / CACHE).is_dir()
