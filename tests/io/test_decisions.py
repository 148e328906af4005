"""review.jsonl: decisions appended whole, read back tolerantly, undone, merged across reviewers."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fcnx.io.decisions import (
    REJECTED,
    Decision,
    append_decision,
    decision_problem,
    merge,
    read_decisions,
    repair_decisions,
    verdicts,
)


def _d(path: str, action: str, at: str, reviewer: str = "ana", **kw: object) -> Decision:
    return Decision(path=path, action=action, reviewer=reviewer, at=f"2026-12-07T15:00:{at}+00:00", **kw)  # type: ignore[arg-type]


def test_append_and_read_back(tmp_path):
    log = tmp_path / "review.jsonl"
    first = _d("a.jpg", "box", "01", box=(1.0, 2.0, 30.0, 40.5))
    second = _d("a.jpg", "relabel", "02", label="lasagna")
    append_decision(log, first)
    append_decision(log, second)
    read = read_decisions(log)
    assert read.decisions == [first, second] and read.set_aside == [] and not read.cut
    line = json.loads(log.read_text().splitlines()[0])
    assert line == {
        "v": 1, "path": "a.jpg", "action": "box", "reviewer": "ana", "at": "2026-12-07T15:00:01+00:00",
        "label": None, "reason": None, "box": [1.0, 2.0, 30.0, 40.5],
    }  # fmt: skip


def test_invalid_decision_is_not_written(tmp_path):
    log = tmp_path / "review.jsonl"
    with pytest.raises(ValueError, match="only a reject"):
        append_decision(log, _d("a.jpg", "reject", "01"))
    assert not log.exists()


def test_cut_and_tampered_lines_are_set_aside(tmp_path):
    log = tmp_path / "review.jsonl"
    append_decision(log, _d("a.jpg", "accept", "01"))
    with log.open("a") as f:
        f.write('{"v": 1, "path": "b.jpg", "action": "explode", "reviewer": "x", "at": "2026-12-07T15:00:00"}\n')
        f.write('{"v": 1, "path": "c.jp')  # a kill mid-write
    read = read_decisions(log)
    assert [d.path for d in read.decisions] == ["a.jpg"]
    assert read.set_aside == [(2, "action 'explode' is not one of accept, box, reject, relabel, undo")]
    assert read.cut


def test_repair_sets_bad_lines_aside_so_appends_start_a_line(tmp_path):
    log = tmp_path / "review.jsonl"
    assert repair_decisions(log).decisions == [] and not log.exists()
    append_decision(log, _d("a.jpg", "accept", "01"))
    good = log.read_bytes()
    with log.open("ab") as f:
        f.write(b'{"v": 1, "path": "b.jpg"}\n{"v": 1, "path": "c.jp')
    read = repair_decisions(log)
    assert read.set_aside == [(2, "field 'action' is missing or not a non-empty string")] and read.cut
    assert log.read_bytes() == good
    assert (tmp_path / REJECTED).read_bytes() == b'{"v": 1, "path": "b.jpg"}\n{"v": 1, "path": "c.jp\n'
    append_decision(log, _d("d.jpg", "accept", "02"))
    assert [d.path for d in read_decisions(log).decisions] == ["a.jpg", "d.jpg"]
    assert repair_decisions(log).set_aside == [] and (tmp_path / REJECTED).read_bytes().count(b"\n") == 2


def test_undo_takes_back_the_reviewers_latest_action():
    decisions = [
        _d("a.jpg", "box", "01", box=(0.0, 0.0, 5.0, 5.0)),
        _d("a.jpg", "reject", "02", reason="wrong_label"),
        _d("a.jpg", "reject", "03", reviewer="bo", reason="unusable"),
        _d("a.jpg", "undo", "04"),
    ]
    v = verdicts(decisions)["a.jpg"]
    assert (v.action, v.reason, v.reviewer, v.box) == ("reject", "unusable", "bo", (0.0, 0.0, 5.0, 5.0))
    assert verdicts(decisions[:2] + [_d("a.jpg", "undo", "05"), _d("a.jpg", "undo", "06")]) == {}


def test_merge_latest_wins_and_lists_disagreements():
    ana = [_d("a.jpg", "accept", "01"), _d("b.jpg", "relabel", "05", label="pho")]
    bo = [
        _d("a.jpg", "reject", "02", reviewer="bo", reason="not_category"),
        _d("b.jpg", "relabel", "03", reviewer="bo", label="pho"),
    ]
    merged = merge([ana, bo])
    assert merged.verdicts["a.jpg"].action == "reject" and merged.verdicts["b.jpg"].label == "pho"
    assert merged.disagreements == {"a.jpg": {"ana": "accept", "bo": "reject (not_category)"}}


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_read_without_a_traceback(tmp_path_factory, data):
    log = tmp_path_factory.mktemp("fuzz") / "review.jsonl"
    log.write_bytes(data)
    read = read_decisions(log)
    assert all(decision_problem(d.as_dict()) is None for d in read.decisions)
