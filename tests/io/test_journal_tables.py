"""The crop journal, the CSV writer, atomic files and output names, on generated cases."""

from __future__ import annotations

import csv
import errno
import io
import json
import os
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fcnx.errors import one_line
from fcnx.io import files
from fcnx.io.files import OutdirLock, atomic_bytes
from fcnx.io.journal import append_lines, dump_line, read_journal
from fcnx.io.tables import csv_bytes
from fcnx.jobs.outdir.naming import NAME_MAX, crop_name, fit, heatmap_name, is_own_output, unique

#: file names as a POSIX file system allows them: any bytes but NUL and '/'
NAMES = st.binary(min_size=1, max_size=60).filter(lambda b: b"\0" not in b and b"/" not in b and b not in (b".", b".."))


@given(NAMES)
def test_journal_lines_keep_any_file_name_losslessly_as_valid_utf8_json(name):
    record = {"path": "/photos/" + os.fsdecode(name), "file": os.fsdecode(name), "n": 1}
    line = dump_line(record)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    back = json.loads(line.decode("utf-8"))  # strict UTF-8: any JSON reader can read it
    assert os.fsencode(back["file"]) == name and back == record


@given(NAMES)
def test_csv_cells_are_the_names_themselves_in_valid_utf8_and_never_formulas(name):
    text = os.fsdecode(name)
    data = csv_bytes(["file", "x"], [{"file": text, "x": -1.5}])
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))  # strict UTF-8
    assert len(rows) == 2  # header and one record, whatever newlines the name holds
    try:
        shown = name.decode("utf-8")  # a UTF-8 name is written as itself
    except UnicodeDecodeError:
        shown = name.decode("utf-8", "backslashreplace")  # only bytes that are not UTF-8 are escaped
    assert rows[1] == ["'" + shown if shown[0] in "=+-@\t\r" else shown, "-1.5"]  # numbers as they are


def test_one_line_escapes_controls_and_bytes_that_are_not_utf8():
    assert one_line("a\nb\tc") == "a\\nb\\tc"
    assert one_line(os.fsdecode(b"caf\xe9")) == "caf\\xe9"
    assert one_line("naïve name") == "naïve name"


def test_a_failed_append_leaves_the_journal_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "boxes.jsonl"
    append_lines(path, dump_line({"path": "a"}))
    real = os.write
    calls = []

    def full(fd, data):
        calls.append(len(data))
        if len(calls) == 1:
            return real(fd, bytes(data)[:5])  # a short write, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(OSError):
        append_lines(path, dump_line({"path": "b"}) + dump_line({"path": "c"}))
    monkeypatch.undo()
    assert path.read_bytes() == dump_line({"path": "a"}) and len(calls) == 2
    assert [r for _, r in read_journal(path).lines] == [{"path": "a"}]


def test_atomic_files_use_short_temporary_names_and_leave_none_behind(tmp_path, monkeypatch):
    names = []
    real = files.tempfile.mkstemp

    def spy(**kwargs):
        fd, tmp = real(**kwargs)
        names.append(Path(tmp).name)
        return fd, tmp

    monkeypatch.setattr(files.tempfile, "mkstemp", spy)
    target = tmp_path / ("é" * 127 + ".p")  # 256 bytes with the suffix: at the limit
    target = target.with_name(target.name[:-1])
    atomic_bytes(target, b"data")
    assert target.read_bytes() == b"data" and len(names[0]) == 18 and os.listdir(tmp_path) == [target.name]


def test_a_second_holder_of_the_lock_is_told_who_has_it(tmp_path):
    busy = rf"in use by another run \(fcnx crop, pid {os.getpid()} on "
    with OutdirLock(tmp_path, "fcnx crop"), pytest.raises(files.UsageError, match=busy):
        OutdirLock(tmp_path).acquire()
    with OutdirLock(tmp_path):  # released: free again, and the idle lock file is empty
        pass
    assert (tmp_path / ".fcnx-lock").read_bytes() == b""


@given(st.text(min_size=1, max_size=200).filter(lambda t: "/" not in t and "\0" not in t), st.integers(1, 5))
def test_output_names_fit_the_file_system_and_keep_in_place_marks(stem, n):
    rel = PurePosixPath("sub") / f"{stem}.png"
    for in_place in (False, True):
        name = crop_name(rel, "a category", in_place, n)
        assert len(os.fsencode(name.name)) <= NAME_MAX and name.parent == rel.parent and name.suffix == ".png"
        assert is_own_output(Path("/out") / name, Path("/out")) == in_place
    assert len(os.fsencode(heatmap_name(rel, None, n).name)) <= NAME_MAX


def test_long_names_are_shortened_distinctly_and_unique_counts_up():
    a, b = PurePosixPath("a" * 300 + "1.png"), PurePosixPath("a" * 300 + "2.png")
    assert fit(a) != fit(b) and len(fit(a).name) == NAME_MAX and fit(a).suffix == ".png"
    taken = {PurePosixPath("x.png"), PurePosixPath("x-2.png")}
    assert unique(
        lambda n: crop_name(PurePosixPath("x.png"), None, False, n), lambda p: p not in taken
    ) == PurePosixPath("x-3.png")


def test_the_crop_journal_keeps_where_records_lie_not_the_records_and_reads_them_back(tmp_path):
    from fcnx.io.discovery import ImageItem
    from fcnx.io.journal import CropJournal, Entry
    from fcnx.testing.records import crop_record

    image = tmp_path / "a.jpg"
    image.write_bytes(b"x")
    stat = image.stat()

    def record(path: str, category: str) -> dict:
        r = crop_record(path, Path(path).name, None, (40, 30), (1.0, 2.0, 10.0, 12.0), category=category)
        return r | {"crop": f"{category}.jpg", "source_size": stat.st_size, "source_mtime_ns": stat.st_mtime_ns}

    old, b1, b2, a1, a2 = (
        record(str(image), "x"),
        record("/b", "p"),
        record("/b", "q"),
        record(str(image), "y"),
        record(str(image), "z"),
    )
    path = tmp_path / "boxes.jsonl"
    # a superseded write of image a, image b's two records with a blank line between them, a's latest two
    path.write_bytes(dump_line(old) + dump_line(b1) + b"\n" + dump_line(b2) + dump_line(a1) + dump_line(a2))
    journal = CropJournal(path, tmp_path / "aside.jsonl")
    journal.load()
    assert all(isinstance(e, Entry) for e in journal.entries.values()) and journal.count == 4
    assert list(journal.records) == [a1, a2, b1, b2]  # where a was first seen, as before the change
    assert path.read_bytes() == b"".join(map(dump_line, (a1, a2, b1, b2)))  # rewritten without the superseded line
    assert journal.owner() == {"y.jpg": str(image), "z.jpg": str(image), "p.jpg": "/b", "q.jpg": "/b"}
    item = ImageItem(image, Path("a.jpg"))
    assert journal.done(item, 2, lambda r: r["crop"] is not None) and not journal.done(item, 1, lambda r: True)
    assert not journal.done(item, 2, lambda r: r["crop"] == "y.jpg")
    from fcnx.io.record import CropRecord

    journal.append([CropRecord.parse(record("/c", "w"))])
    journal.compact(["/c", "/b", str(image)])
    assert [r["path"] for r in journal.records] == ["/c", "/b", "/b", str(image), str(image)]
    assert [json.loads(line)["path"] for line in path.read_bytes().splitlines()] == [
        "/c",
        "/b",
        "/b",
        str(image),
        str(image),
    ]
