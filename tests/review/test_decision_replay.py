"""The replayed decisions kept beside the review index: a reopened review reads only the lines of review.jsonl
appended since, and its state is exactly that of a full replay -- after appends, merged reviewers, images gone --
while a cut, tampered or rewritten review.jsonl is replayed in full, its bad lines set aside and named."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fcnx.io import replayed
from fcnx.io.decisions import REVIEW, Decision, append_decision
from fcnx.io.replayed import CACHE
from fcnx.review.index import open_index
from fcnx.review.session import Session, merge_files
from fcnx.testing.records import write_synthetic_journal

CLASSES = ["a", "b", "c"]
AT = "2026-12-07T10:00:{:02d}+00:00"


def _run(root: Path, count: int = 12) -> Path:
    """A crop OUTDIR of ``count`` images whose files exist."""
    write_synthetic_journal(root, count, CLASSES)
    for k in range(count):
        path = root / "images" / CLASSES[k % 3] / f"{k}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    return root


def _path(root: Path, k: int) -> str:
    return str(root / "images" / CLASSES[k % 3] / f"{k}.jpg")


def _add(root: Path, *decisions: tuple[int | str, str, str, dict]) -> None:
    """Append decisions (image number or path, action, reviewer, fields) at successive seconds."""
    for k, action, reviewer, fields in decisions:
        path = _path(root, k) if isinstance(k, int) else k
        second = sum(1 for _ in (root / REVIEW).open()) if (root / REVIEW).exists() else 0
        append_decision(root / REVIEW, Decision(path, action, reviewer, AT.format(second), **fields))


def _view(root: Path, drop_cache: bool = False) -> tuple:
    """What a review shows: every image's state code, dispute and state, and the warnings."""
    if drop_cache:
        (root / CACHE).unlink(missing_ok=True)
    index = open_index(root)
    with Session(index, "ana") as session:
        view = (
            index.state.tolist(),
            index.disputed.tolist(),
            [session.state(k) for k in range(len(index))],
            session.warnings,
        )
    index.close()
    return view


@pytest.fixture
def parsed(monkeypatch):
    """The byte each parse of review.jsonl started at."""
    starts: list[int] = []
    parse = replayed._parse

    def spy(data, start):
        starts.append(start)
        return parse(data, start)

    monkeypatch.setattr(replayed, "_parse", spy)
    return starts


def test_a_reopen_reads_only_the_appended_lines_and_gives_the_full_replay(tmp_path, parsed):
    root = _run(tmp_path)
    _add(
        root,
        (0, "accept", "ana", {}),
        (1, "reject", "ana", {"reason": "unusable"}),
        (2, "box", "ana", {"box": (1.0, 2.0, 3.0, 4.0)}),
    )
    first = _view(root)
    assert parsed == [0] and (root / CACHE).is_file()
    assert (
        first[0][:4] == [1, 2, 0, 0]
        and first[2][2]["decisions"] == 1
        and first[2][2]["verdict"]["box"] == (1.0, 2.0, 3.0, 4.0)
    )
    _add(root, (0, "undo", "ana", {}), (3, "relabel", "ana", {"label": "c"}), (1, "accept", "bob", {}))
    grown = (root / REVIEW).stat().st_size
    index = open_index(root)
    with Session(index, "ana") as session:  # the session's own decisions are appended lines too
        session.decide(4, "reject", reason="wrong_label")
        session.decide(4, "undo")
        session.decide(5, "accept")
    index.close()
    parsed.clear()
    again = _view(root)
    assert parsed == [grown]  # from where the last open stopped: the session's three decisions only
    assert again[0][:6] == [0, 1, 0, 3, 0, 1] and again[1][:6] == [False, True, False, False, False, False]
    assert again[2][1]["disagreement"] == {"ana": "reject (unusable)", "bob": "accept"}
    assert again[2][4] == {"verdict": None, "disagreement": None, "decisions": 2}
    assert again == _view(root, drop_cache=True)


def test_a_cut_or_rewritten_review_is_replayed_in_full(tmp_path, parsed):
    root = _run(tmp_path)
    _add(root, *[(k, "accept", "ana", {}) for k in range(6)])
    _view(root)
    lines = (root / REVIEW).read_bytes().splitlines(keepends=True)
    (root / REVIEW).write_bytes(b"".join(lines[:3]))  # cut back by hand: shorter than what was kept
    parsed.clear()
    cut = _view(root)
    assert parsed == [0] and cut[0][:6] == [1, 1, 1, 0, 0, 0] and cut == _view(root, drop_cache=True)
    _add(root, (7, "accept", "ana", {}))
    data = (root / REVIEW).read_bytes()
    (root / REVIEW).write_bytes(data.replace(b"/images/a/0.jpg", b"/images/b/1.jpg", 1))  # same size, in place
    parsed.clear()
    rewritten = _view(root)
    assert parsed == [0] and rewritten[0][:8] == [0, 1, 1, 0, 0, 0, 0, 1]
    assert rewritten == _view(root, drop_cache=True)


def test_a_tampered_line_is_set_aside_and_named_kept_part_or_appended(tmp_path, parsed):
    root = _run(tmp_path)
    _add(root, *[(k, "accept", "ana", {}) for k in range(4)])
    _view(root)
    data = (root / REVIEW).read_bytes()
    (root / REVIEW).write_bytes(data.replace(b'"accept"', b'"acce_t"', 1))  # line 1, same size
    parsed.clear()
    view = _view(root)
    assert view[3][0] == (
        f"{root / REVIEW}:1: not a decision (action 'acce_t' is not one of accept, box, reject, relabel, undo); "
        f"set aside in review.rejected.jsonl"
    )
    assert parsed == [0, 0] and view[0][:4] == [0, 1, 1, 1]  # found bad, repaired, replayed
    with (root / REVIEW).open("ab") as file:  # an appended line that is not a decision, and a cut one
        file.write(b'{"v": 1, "path": 3}\n{"v": 1, "pa')
    parsed.clear()
    view = _view(root)
    assert parsed == [len(data) - len(data.splitlines()[0]) - 1, 0, 0]  # the tail first, then the whole file
    assert [line.split(": ", 1)[1] for line in view[3]] == [
        "not a decision (field 'path' is missing or not a non-empty string); set aside in review.rejected.jsonl",
        "its last line was cut short (a kill); set aside in review.rejected.jsonl",
    ]
    assert view[3][0].startswith(f"{root / REVIEW}:4: ") and view[0][:4] == [0, 1, 1, 1]
    assert _view(root) == _view(root, drop_cache=True) == (view[0], view[1], view[2], [])


def test_merged_reviewers_and_images_gone_or_not_in_the_run_are_as_in_a_full_replay(tmp_path, parsed):
    root = _run(tmp_path)
    _add(root, (0, "accept", "ana", {}), (1, "accept", "ana", {}), (str(root / "elsewhere.jpg"), "accept", "ana", {}))
    _view(root)
    other = tmp_path / "bob"
    other.mkdir()
    for k, (image, action, fields) in enumerate(
        [(0, "reject", {"reason": "not_category"}), (2, "relabel", {"label": "a"})]
    ):
        append_decision(other / REVIEW, Decision(_path(root, image), action, "bob", AT.format(50 + k), **fields))
    lines, merged = merge_files(root, [other / REVIEW])
    assert lines == [f"{other / REVIEW}: 2 decision(s) merged, 0 already there"]
    os.unlink(_path(root, 1))  # its decision is skipped while the file is gone
    parsed.clear()
    view = _view(root)
    assert len(parsed) == 1 and parsed[0] > 0
    assert view[0][:3] == [2, 0, 3] and view[1][:3] == [True, False, False]
    assert view[2][0]["disagreement"] == {"ana": "accept", "bob": "reject (not_category)"}
    assert {path: v.action for path, v in merged.verdicts.items()} == {
        _path(root, 0): "reject",
        _path(root, 1): "accept",
        str(root / "elsewhere.jpg"): "accept",
        _path(root, 2): "relabel",
    }
    assert view[3] == [
        f"{root / REVIEW}: 1 decision(s) for 1 image(s) this run does not have, skipped (kept in the file): "
        f"{root / 'elsewhere.jpg'}",
        f"{root / REVIEW}: 1 decision(s) for 1 image(s) whose file is gone, skipped (kept in the file): {_path(root, 1)}",
    ]
    assert view == _view(root, drop_cache=True)
    (root / _path(root, 1)).touch()  # back: its decision counts again
    assert _view(root)[0][:3] == [2, 1, 3] == _view(root, drop_cache=True)[0][:3]


def test_a_kept_replay_of_another_index_or_not_whole_is_not_used(tmp_path, parsed):
    root = _run(tmp_path)
    _add(root, (0, "accept", "ana", {}))
    _view(root)
    kept = (root / CACHE).read_bytes()
    (root / CACHE).write_bytes(kept[:-1] + bytes([kept[-1] ^ 1]))
    parsed.clear()
    assert _view(root)[0][0] == 1 and parsed == [0]
    write_synthetic_journal(root, 13, CLASSES)  # another run in the same OUTDIR: other item numbers
    (root / "images" / "a" / "12.jpg").touch()
    parsed.clear()
    assert _view(root)[0][:1] == [1] and parsed == [0]


def test_files_are_asked_for_again_only_where_their_folder_changed(tmp_path, monkeypatch):
    root = _run(tmp_path)
    _add(root, *[(k, "accept", "ana", {}) for k in range(6)])
    old = 1_600_000_000_000_000_000
    for folder in CLASSES:  # changed long ago: their fingerprints are kept
        os.utime(root / "images" / folder, ns=(old, old))
    asked: list[list[str]] = []
    files_gone = replayed.files_gone

    def spy(paths):
        asked.append(sorted(paths))
        return files_gone(asked[-1])

    monkeypatch.setattr(replayed, "files_gone", spy)
    first = _view(root)
    assert asked == [sorted(_path(root, k) for k in range(6))] and first[0][:7] == [1] * 6 + [0]
    assert _view(root) == first and len(asked) == 1  # no folder changed: no file asked for
    _add(root, (7, "accept", "ana", {}))
    assert _view(root)[0][:8] == [1] * 6 + [0, 1] and asked[-1] == [_path(root, 7)]  # only the new one
    os.utime(root / "images" / "b", ns=(old, old))  # 7.jpg's folder: back to its kept fingerprint
    os.unlink(_path(root, 4))  # in folder b: its times change
    view = _view(root)
    assert asked[-1] == sorted(_path(root, k) for k in (*range(6), 7)) and view[0][:8] == [1, 1, 1, 1, 0, 1, 0, 1]
    assert view[3] == [
        f"{root / REVIEW}: 1 decision(s) for 1 image(s) whose file is gone, skipped (kept in the file): {_path(root, 4)}"
    ]
    assert view == _view(root, drop_cache=True)
