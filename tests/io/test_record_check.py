"""record_problem's quick check of plain JSON records answers what its field by field check answers."""

from __future__ import annotations

import json

import pytest

from fcnx.io import record as schema
from fcnx.testing.records import crop_record

GOOD = json.loads(json.dumps(crop_record("/d/a.jpg", "a.jpg", "pizza", (512, 384), (1.0, 2.0, 30.0, 40.0))))
CHANGES = [
    ("width", True), ("width", 0), ("width", 1.5), ("height", -1), ("w", 0.0), ("h", float("nan")),
    ("x", float("inf")), ("x", 10**400), ("x", "1"), ("confidence", None), ("label", None), ("label", 3),
    ("found", 1), ("cell", [0]), ("cell", [0, 1.0]), ("scaled_size", [1, True]), ("net_scores", {"a": "x"}),
    ("net_scores", {"a": True}), ("net_scores", {"a": float("nan")}), ("net_votes", {"a": 1}), ("crop", ""),
    ("crop", "../x.jpg"), ("heatmap", "/abs.png"), ("heatmap", "a\\b.png"), ("heatmap", None), ("path", 7),
    ("category_index", False), ("scale", 10**400), ("guesses", [["a", 0.5, 2]]), ("guesses", []),
    ("guesses", [["a", 0.5]]), ("guesses", "a"), ("guesses", [["a", float("nan"), 1]]), ("guesses", [[1, 0.5, 1]]),
    ("guesses", [["a", 0.5, True]]), ("guesses", None),
]  # fmt: skip


#: changes the full check accepts too (ints of any size are numbers)
ACCEPTED = [(None, None), ("label", None), ("heatmap", None), ("x", 10**400), ("scale", 10**400),
            ("guesses", [["a", 0.5, 2]]), ("guesses", [])]  # fmt: skip


@pytest.mark.parametrize(
    ("key", "value"), [(None, None), *CHANGES, *((key, "drop") for key in schema.FIELDS)], ids=lambda v: repr(v)[:20]
)
def test_the_quick_check_agrees_with_the_full_one(monkeypatch, key, value):
    record = dict(GOOD)
    if value == "drop":
        del record[key]
    elif key is not None:
        record[key] = value
    quick = schema.record_problem(record)
    monkeypatch.setattr(schema, "_quick_ok", lambda record: False)
    assert quick == schema.record_problem(record)
    assert (quick is None) == ((key, value) in ACCEPTED)
