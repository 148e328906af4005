"""Every file fcnx reads back, fuzzed (issue 31, item 6): whatever its bytes, the reader returns what it
can use or refuses in one line (an :class:`~fcnx.errors.FcnxError`, which the CLI prints as one line),
never a traceback, and it never loses the user's earlier data: a file it refuses is left byte for byte,
and a journal line it cannot use is kept aside.

``review.jsonl`` is fuzzed in ``tests/io/test_decisions.py``, file names in ``tests/cli/test_fuzz_names.py``.
Bytes are drawn three ways: any bytes, JSON of any shape, and JSON shaped like the file (its own keys,
each holding any JSON value), so that the checks past the JSON parser are reached too.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from fcnx.backbones.checkpoint import CheckpointMeta, read_meta
from fcnx.errors import FcnxError
from fcnx.io.datasets import open_dataset
from fcnx.io.files import read_class_list
from fcnx.io.journal import CropJournal, read_journal
from fcnx.io.record import record_problem
from fcnx.jobs.outdir.settings import SETTINGS, SettingsFile
from fcnx.jobs.resume import ResumeJournal
from fcnx.jobs.scoring import read_boxes
from fcnx.training.manifest import MANIFEST, ensemble_weights

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["", "..", "/etc/passwd", "a\nb", "\x00", "red", "12.5", "tiny0"])
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)


def dumped(value: object) -> bytes:
    return json.dumps(value, allow_nan=True).encode("utf-8")


def shaped(keys: list[str], values: st.SearchStrategy = JSON) -> st.SearchStrategy[dict]:
    """JSON objects with some of ``keys``, each holding any value (and maybe one stray key)."""
    return st.fixed_dictionaries({}, optional={k: values for k in [*keys, "stray"]})


def any_bytes(*shapes: st.SearchStrategy) -> st.SearchStrategy[bytes]:
    """Any bytes, any JSON, or JSON of the given shapes (cut short at a random point, sometimes)."""
    whole = st.one_of(st.binary(max_size=300), JSON.map(dumped), *[s.map(dumped) for s in shapes])
    return st.one_of(whole, st.tuples(whole, st.integers(0, 300)).map(lambda cut: cut[0][: cut[1]]))


def one_line_or(call):
    """``call()``'s result, or the refusal it raised, checked to be one printable line."""
    try:
        return call()
    except FcnxError as exc:
        text = str(exc)
        assert text.isprintable() and "\n" not in text, text
        return exc


def folder(factory) -> Path:
    return factory.mktemp("fuzz")


# --------------------------------------------------------------------------- boxes.jsonl

RECORD_KEYS = ["path", "file", "x", "y", "w", "h", "width", "height", "category", "box", "crop", "confidence"]
LINES = st.lists(st.one_of(shaped(RECORD_KEYS).map(dumped), st.binary(max_size=60)), max_size=5).map(b"\n".join)


@FUZZ
@given(data=any_bytes(shaped(RECORD_KEYS)) | LINES)
def test_boxes_jsonl_for_crop_resume_keeps_every_line_it_cannot_use(tmp_path_factory, data):
    out = folder(tmp_path_factory)
    (out / "boxes.jsonl").write_bytes(data)
    journal = CropJournal(out / "boxes.jsonl", out / "boxes.rejected.jsonl")
    one_line_or(journal.load)
    assert all(record_problem(r) is None for r in journal.records)
    aside = (out / "boxes.rejected.jsonl").read_bytes() if (out / "boxes.rejected.jsonl").exists() else b""
    pieces = data.split(b"\n")
    whole = pieces if data.endswith(b"\n") else pieces[:-1]  # a last line without newline may be cut: dropped
    for line in whole:
        if line.strip():
            try:
                record = json.loads(line)
            except (ValueError, RecursionError):
                record = None
            if not isinstance(record, dict) or record_problem(record) is not None:
                assert line + b"\n" in aside  # set aside, never lost


@FUZZ
@given(data=any_bytes(shaped(RECORD_KEYS)) | LINES)
def test_boxes_jsonl_for_evaluate_train_and_export_is_read_or_refused_in_one_line(tmp_path_factory, data):
    path = folder(tmp_path_factory) / "boxes.jsonl"
    path.write_bytes(data)
    index = one_line_or(lambda: read_boxes(path))
    if not isinstance(index, FcnxError):
        assert all(math.isfinite(v) for boxes in index.by_path.values() for box in boxes.values() for v in box)
    assert path.read_bytes() == data


@FUZZ
@given(data=any_bytes(shaped(["path", "outcome"])) | LINES)
def test_the_evaluate_journal_keeps_only_whole_outcomes(tmp_path_factory, data):
    out = folder(tmp_path_factory)
    (out / "evaluation.jsonl").write_bytes(data)
    journal = ResumeJournal(
        out, "fcnx evaluate", "evaluation.jsonl", {"v": 1}, ["evaluation.csv"], lambda r: "outcome" in r
    )
    opened = one_line_or(journal.open)
    if isinstance(opened, FcnxError):
        assert (out / "evaluation.jsonl").read_bytes() == data
        return
    journal.close()
    assert all(isinstance(k, str) and "outcome" in r for k, r in journal.done.items())
    assert [r for _, r in read_journal(out / "evaluation.jsonl").lines] == list(journal.done.values())


# --------------------------------------------------------------------------- ensemble.json

MEMBER = shaped(["net", "checkpoint", "val_top1", "finished"])
MANIFEST_SHAPE = shaped(["kernel", "config", "classes", "val_top1", "complete", "version"]).flatmap(
    lambda d: st.lists(MEMBER, max_size=3).map(lambda members: {**d, "members": members})
)


@FUZZ
@given(data=any_bytes(MANIFEST_SHAPE))
def test_ensemble_json_is_read_or_refused_in_one_line(tmp_path_factory, data):
    run = folder(tmp_path_factory)
    (run / MANIFEST).write_bytes(data)
    (run / "tiny0.safetensors").write_bytes(b"weights")
    result = one_line_or(lambda: ensemble_weights(run))
    if not isinstance(result, FcnxError):
        names, files, kernel = result
        assert names and set(files) == set(names) and isinstance(kernel, int) and kernel >= 1
    assert (run / MANIFEST).read_bytes() == data


# --------------------------------------------------------------------------- OUTDIR settings

SETTINGS_SHAPE = shaped(["version", "settings", "files"])


@FUZZ
@given(data=any_bytes(SETTINGS_SHAPE, st.fixed_dictionaries({"settings": st.just({"step": 1.2}), "files": JSON})))
def test_outdir_settings_are_checked_or_refused_in_one_line_and_kept(tmp_path_factory, data):
    out = folder(tmp_path_factory)
    (out / SETTINGS).write_bytes(data)
    (out / "boxes.jsonl").write_bytes(b"")
    settings_file = SettingsFile(out, {"step": 1.2})
    result = one_line_or(lambda: settings_file.check(["boxes.csv"], "boxes.jsonl"))
    if isinstance(result, FcnxError):
        assert (out / SETTINGS).read_bytes() == data  # refused: the OUTDIR as it was
    else:
        state = json.loads((out / SETTINGS).read_text())
        assert state["settings"] == {"step": 1.2} and "boxes.csv" in state["files"]


# --------------------------------------------------------------------------- class lists and Food-101 meta lists

NAME_LINES = st.lists(
    st.one_of(
        st.sampled_from(["red", "green", " red ", "red/0", "red/../x", "/abs", ".", "", "\ufeffred", "r\x1bd"]),
        st.text(max_size=8),
    ),
    max_size=6,
).flatmap(
    lambda names: st.sampled_from(["\n", "\r\n", "\r", "\u2028"]).map(lambda sep: sep.join(names).encode("utf-8"))
)


@FUZZ
@given(data=st.binary(max_size=200) | NAME_LINES)
def test_class_lists_are_read_or_refused_in_one_line(tmp_path_factory, data):
    path = folder(tmp_path_factory) / "classes.txt"
    path.write_bytes(data)
    classes = one_line_or(lambda: read_class_list(path))
    if not isinstance(classes, FcnxError):
        assert classes and len(set(classes)) == len(classes) and all(c.isprintable() and c.strip() for c in classes)
    assert path.read_bytes() == data


@FUZZ
@given(classes=st.binary(max_size=80) | NAME_LINES, train=st.binary(max_size=80) | NAME_LINES, test=NAME_LINES)
def test_food101_meta_lists_are_read_or_refused_in_one_line(tmp_path_factory, classes, train, test):
    root = folder(tmp_path_factory)
    (root / "meta").mkdir()
    (root / "images" / "red").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(root / "images" / "red" / "0.jpg")
    lists = {"classes.txt": classes, "train.txt": train, "test.txt": test}
    for name, data in lists.items():
        (root / "meta" / name).write_bytes(data)
    for split in ("train", "test", "all"):
        dataset = one_line_or(lambda split=split: open_dataset(root, split))
        if not isinstance(dataset, FcnxError):
            assert all(root / "images" in item.path.parents and item.label in dataset.classes for item in dataset.items)
    assert {name: (root / "meta" / name).read_bytes() for name in lists} == lists


# --------------------------------------------------------------------------- checkpoint metadata

META_SHAPE = shaped(["arch", "classes", "input_size", "head", "extra", "format_version"])


@FUZZ
@given(data=any_bytes(META_SHAPE, META_SHAPE.map(lambda d: {"arch": "tiny0", "classes": ["a"], "input_size": 64, **d})))
def test_checkpoint_metadata_is_read_or_refused_in_one_line(tmp_path_factory, data):
    run = folder(tmp_path_factory)
    weights, sidecar = run / "net.pt", run / "net.pt.json"  # a pickle's metadata: its JSON sidecar, read first
    weights.write_bytes(b"not read")
    sidecar.write_bytes(data)
    meta = one_line_or(lambda: read_meta(weights))
    if isinstance(meta, CheckpointMeta):
        assert meta.classes and 1 <= meta.input_size <= 4096 and isinstance(meta.arch, str)
    assert sidecar.read_bytes() == data
    (run / "net.safetensors").write_bytes(data)  # and a safetensors file of those bytes
    assert isinstance(one_line_or(lambda: read_meta(run / "net.safetensors")), (FcnxError, CheckpointMeta, type(None)))
