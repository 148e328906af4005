"""Label Studio JSON: tasks written with fcnx's boxes as predictions, exports read back as decisions by path."""

from __future__ import annotations

import json
import random
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fcnx.errors import UsageError
from fcnx.io import labelstudio as ls
from fcnx.io.decisions import decision_problem
from fcnx.method.geometry import pixel_box

AT = "2026-12-07T15:00:00+00:00"


def image(path: str, width: int, height: int, label: str = "pizza", box=(10.0, 20.0, 30.0, 40.0)) -> ls.TaskImage:
    return ls.TaskImage(
        Path(path), PurePosixPath(path.lstrip("/")), width, height, label, [ls.TaskBox(label, box, 0.75)]
    )


def run_images(*images: ls.TaskImage) -> dict[str, ls.RunImage]:
    return {str(i.path): ls.RunImage(str(i.path), i.file.as_posix(), i.width, i.height, i.label) for i in images}


def submitted(task: dict, **annotation) -> dict:
    """The task as Label Studio exports it once a reviewer submitted its pre-annotation unchanged."""
    result = json.loads(json.dumps(task["predictions"][0]["result"]))
    return {"id": 7, **task, "annotations": [{"completed_by": 3, "updated_at": AT, "result": result, **annotation}]}


def read(tmp_path: Path, tasks: list, images: dict) -> ls.Imported:
    path = tmp_path / "export.json"
    path.write_text(json.dumps(tasks))
    return ls.import_export(path, images, fallback_at=AT)


def test_a_task_holds_the_box_in_percent_with_a_stable_id():
    one = image("/data/food/images/pizza/1.jpg", 640, 480)
    task = ls.task(one, "fcnx 0.1.0: tiny0", "/data/local-files/?d=food")
    assert task["data"] == {
        "image": "/data/local-files/?d=food/data/food/images/pizza/1.jpg",
        "fcnx_path": "/data/food/images/pizza/1.jpg",
        "label": "pizza",
    }
    [prediction] = task["predictions"]
    assert (prediction["model_version"], prediction["score"]) == ("fcnx 0.1.0: tiny0", 0.75)
    [result] = prediction["result"]
    assert {k: result[k] for k in ("from_name", "to_name", "type", "original_width", "original_height")} == {
        "from_name": "box", "to_name": "image", "type": "rectanglelabels", "original_width": 640, "original_height": 480,
    }  # fmt: skip
    assert result["value"] == {
        "x": 100 * 10 / 640, "y": 100 * 20 / 480, "width": 100 * 30 / 640, "height": 100 * 40 / 480,
        "rotation": 0, "rectanglelabels": ["pizza"],
    }  # fmt: skip
    assert (
        result["id"]
        == ls.task(one, "other", None)["predictions"][0]["result"][0]["id"]
        == ls.result_id(one.path, "pizza")
    )
    assert ls.image_url(PurePosixPath("a b/c.jpg"), Path("/x"), "http://host/img") == "http://host/img/a%20b/c.jpg"
    assert '<Label value="pizza" />' in ls.config(["pizza"]) and '<Choice value="wrong_label" />' in ls.config([])


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 6000),
    st.integers(1, 6000),
    st.floats(0, 1),
    st.floats(0, 1),
    st.floats(0.001, 1),
    st.floats(0.001, 1),
)
def test_percent_and_back_is_exact_to_the_pixel(width, height, fx, fy, fw, fh):
    x, y = fx * (width - 1), fy * (height - 1)
    box = (round(x, 3), round(y, 3), round(max(1.0, fw * (width - x)), 3), round(max(1.0, fh * (height - y)), 3))
    box = (box[0], box[1], min(box[2], width - box[0]), min(box[3], height - box[1]))
    task = ls.task(image("/d/a.jpg", width, height, box=box), "m", None)
    value = task["predictions"][0]["result"][0]["value"]
    back = ls.pixels(value, (width, height))
    assert back == pytest.approx(box, abs=1e-6)
    assert pixel_box(back, (height, width)) == pixel_box(box, (height, width))


def test_export_read_back_by_path_never_by_position(tmp_path):
    a, b = (
        image("/d/images/pizza/1.jpg", 640, 480),
        image("/d/images/pizza/2.jpg", 300, 500, box=(0.0, 0.0, 300.0, 500.0)),
    )
    c = image("/d/images/sushi/3.jpg", 1024, 768, label="sushi")
    images = run_images(a, b, c)
    tasks = [submitted(ls.task(i, "m", "http://h/files")) for i in (a, b, c)]
    del tasks[1]["data"]["fcnx_path"]  # matched by the tail of its URL
    tasks[2]["annotations"][0]["result"][0]["value"] |= {"x": 50.0, "y": 25.0, "width": 25.0, "height": 50.0}
    tasks[2]["annotations"][0]["result"].append(
        {"type": "choices", "from_name": "verdict", "to_name": "image", "value": {"choices": ["unusable"]}}
    )
    stranger = submitted(ls.task(image("/elsewhere/x.jpg", 10, 10), "m", None))
    stranger["data"]["fcnx_path"] = "/elsewhere/x.jpg"
    random.Random(1).shuffle(tasks)
    imported = read(tmp_path, [*tasks, stranger], images)
    assert imported.matched == 3
    assert imported.skipped == [
        f"{tmp_path / 'export.json'}: task 4 (id 7): fcnx_path '/elsewhere/x.jpg' is no image of the run; skipped"
    ]
    got = {(d.path, d.action): d for d in imported.decisions}
    assert got[(str(a.path), "accept")].box == pytest.approx(a.boxes[0].box, abs=1e-6)
    assert got[(str(b.path), "accept")].box == (0.0, 0.0, 300.0, 500.0)
    assert got[(str(c.path), "box")].box == (512.0, 192.0, 256.0, 384.0)
    assert got[(str(c.path), "reject")].reason == "unusable"
    assert {d.reviewer for d in imported.decisions} == {"labelstudio:3"} and {d.at for d in imported.decisions} == {AT}
    assert all(decision_problem(d.as_dict()) is None for d in imported.decisions)


def test_relabels_reviewers_and_what_is_skipped(tmp_path):
    a = image("/d/images/pizza/1.jpg", 640, 480)
    images = run_images(a)
    base = ls.task(a, "m", None)
    relabel_box = submitted(base, completed_by={"id": 4, "email": "ana@example.org"})
    relabel_box["annotations"][0]["result"][0]["value"]["rectanglelabels"] = ["lasagna"]
    choice = submitted(base, result=[{"type": "choices", "from_name": "class", "value": {"choices": ["ramen"]}}])
    turned = submitted(base)
    turned["annotations"][0]["result"][0]["original_width"] = 480  # Label Studio saw it transposed
    turned["annotations"][0]["result"][0]["original_height"] = 640
    rotated = submitted(base)
    rotated["annotations"][0]["result"][0]["value"]["rotation"] = 30
    cancelled = submitted(base, was_cancelled=True)
    unknown = {"data": {"image": "http://h/other/9.jpg"}, "annotations": []}
    kept = submitted(
        ls.task(ls.TaskImage(a.path, a.file, 640, 480, "pizza", [ls.TaskBox("red", a.boxes[0].box, None)]), "m", None)
    )
    images_found_red = {k: ls.RunImage(v.path, v.file, v.width, v.height, v.label, "red") for k, v in images.items()}
    assert [d.action for d in read(tmp_path, [kept], images_found_red).decisions] == ["accept"]  # the run's category
    imported = read(tmp_path, [relabel_box, choice, turned, rotated, cancelled, unknown], images)
    actions = [(d.action, d.label, d.reviewer) for d in imported.decisions]
    assert actions == [
        ("relabel", "lasagna", "ana@example.org"),
        ("accept", None, "ana@example.org"),
        ("relabel", "ramen", "labelstudio:3"),
    ]
    where = f"{tmp_path / 'export.json'}: task"
    assert imported.skipped == [
        f"{where} 3 (id 7), annotation 1: Label Studio saw the image as 480x640, the run as 640x480 (upright, EXIF "
        "orientation applied): its box would be shifted; skipped",
        f"{where} 4 (id 7), annotation 1: its rectangle is rotated: fcnx boxes are upright; skipped",
        f"{where} 6: image 'http://h/other/9.jpg' is no image of the run; skipped",
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not a Label Studio JSON export (not JSON"),
        (b'{"tasks": []}', "not a Label Studio JSON export (expected a list of tasks)"),
        (b"[1, 2]", "expected a list of tasks"),
        (b"[" * 100000, "not JSON"),
    ],
)
def test_bad_exports_are_one_line_errors_naming_the_file(tmp_path, data, message):
    path = tmp_path / "export.json"
    path.write_bytes(data)
    with pytest.raises(UsageError) as caught:
        ls.import_export(path, {})
    text = str(caught.value)
    assert text.startswith(f"{path}: ") and message in text and "\n" not in text


IMAGES = run_images(image("/d/images/pizza/1.jpg", 64, 48))
JSONISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 200)
    | st.floats(allow_nan=True)
    | st.sampled_from(
        ["rectanglelabels", "choices", "verdict", "accept", "crop", "/d/images/pizza/1.jpg", "pizza/1.jpg", "x", AT]
    ),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "data",
                    "image",
                    "fcnx_path",
                    "annotations",
                    "result",
                    "value",
                    "type",
                    "from_name",
                    "x",
                    "y",
                    "width",
                    "height",
                    "rotation",
                    "rectanglelabels",
                    "choices",
                    "completed_by",
                    "updated_at",
                    "original_width",
                    "original_height",
                    "was_cancelled",
                    "id",
                ]
            ),
            inner,
            max_size=6,
        )
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=400), JSONISH.map(lambda v: json.dumps(v).encode())))
def test_any_bytes_give_decisions_or_one_line_naming_the_file(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "export.json"
    path.write_bytes(data)
    try:
        imported = ls.import_export(path, IMAGES, fallback_at=AT)
    except UsageError as exc:
        assert str(exc).startswith(f"{path}: ") and "\n" not in str(exc)
        return
    assert all(decision_problem(d.as_dict()) is None for d in imported.decisions)
    assert all("\n" not in line and line.startswith(f"{path}: task ") for line in imported.skipped)
