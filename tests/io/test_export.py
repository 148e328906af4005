"""`fcnx export`: a real crop run's boxes.jsonl read back with the formats' own readers (pycocotools, xml.etree, YOLO by hand)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from fcnx.cli import cli
from fcnx.method.geometry import pixel_box


def run(*args) -> object:
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def cropped(tmp_path_factory) -> Path:
    """A real `fcnx crop` of the fcnx-tiny demo canvases (10 images, 3 shipped nets)."""
    import fcnx_tiny

    out = tmp_path_factory.mktemp("crop") / "out"
    demo = Path(fcnx_tiny.__file__).parent / "demo"
    result = run(
        "crop", "--nets", "tiny_vgg,tiny_resnet,tiny_inception", "--box", "square", demo, "-o", out, "--device", "cpu"
    )
    assert result.exit_code == 0, result.output
    return out


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "boxes.jsonl").read_text().splitlines()]


def test_coco_loads_in_pycocotools_with_the_boxes_of_boxes_jsonl(cropped, tmp_path):
    from pycocotools.coco import COCO

    result = run("export", cropped, "--format", "coco", "-o", tmp_path / "coco")
    assert result.exit_code == 0, result.output
    assert "10 image(s), 10 box(es), 10 categories as coco" in result.output
    coco = COCO(str(tmp_path / "coco" / "labels.json"))
    expected = records(cropped)
    assert len(coco.getImgIds()) == len(expected) == 10
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    by_index = sorted({(r["category_index"], r["category"]) for r in expected})
    assert [names[k] for k in sorted(names)] == [name for _, name in by_index]  # ids follow the nets' class order
    for record in expected:
        (image,) = [i for i in coco.loadImgs(coco.getImgIds()) if i["file_name"] == record["file"]]
        assert (image["width"], image["height"]) == (record["width"], record["height"])
        (ann,) = coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]]))
        assert ann["bbox"] == [record["x"], record["y"], record["w"], record["h"]]
        assert names[ann["category_id"]] == record["category"]
        assert ann["score"] == record["mean_confidence"] and ann["votes"] == record["votes"]
        assert ann["area"] == record["w"] * record["h"] and ann["iscrowd"] == 0


def test_voc_parses_back_to_the_crops_pixel_corners(cropped, tmp_path):
    assert run("export", cropped, "--format", "voc", "-o", tmp_path / "voc").exit_code == 0
    for record in records(cropped):
        xml = tmp_path / "voc" / "Annotations" / Path(record["file"]).with_suffix(".xml")
        root = ET.parse(xml).getroot()
        assert root.findtext("filename") == Path(record["file"]).name and root.findtext("path") == record["path"]
        assert (int(root.findtext("size/width")), int(root.findtext("size/height"))) == (
            record["width"],
            record["height"],
        )
        (obj,) = root.findall("object")
        assert obj.findtext("name") == record["category"]
        corners = tuple(int(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax"))
        assert corners == pixel_box(
            (record["x"], record["y"], record["w"], record["h"]), (record["height"], record["width"])
        )
        with Image.open(record["path"]) as image:  # the same region fcnx crop saved
            assert image.crop(corners).size == Image.open(cropped / record["crop"]).size


def test_yolo_reads_back_to_pixel_boxes_within_rounding(cropped, tmp_path):
    assert run("export", cropped, "--format", "yolo", "-o", tmp_path / "yolo").exit_code == 0
    classes = (tmp_path / "yolo" / "classes.txt").read_text().splitlines()
    listed = (tmp_path / "yolo" / "images.txt").read_text().splitlines()
    expected = records(cropped)
    assert listed == [os.path.realpath(r["path"]) for r in expected]
    for record in expected:
        line = (tmp_path / "yolo" / "labels" / Path(record["file"]).with_suffix(".txt")).read_text().split()
        k, cx, cy, w, h = int(line[0]), *map(float, line[1:])
        W, H = record["width"], record["height"]
        assert classes[k] == record["category"]
        back = ((cx - w / 2) * W, (cy - h / 2) * H, w * W, h * H)
        assert back == pytest.approx((record["x"], record["y"], record["w"], record["h"]), abs=1e-6 * max(W, H))


def test_fiftyone_layout_links_every_image_under_its_coco_name(cropped, tmp_path):
    dest = tmp_path / "fo"
    assert run("export", cropped, "--format", "fiftyone", "-o", dest).exit_code == 0
    document = json.loads((dest / "labels.json").read_text())
    for image in document["images"]:
        link = dest / "data" / image["file_name"]
        assert link.is_symlink()
        with Image.open(link) as picture:
            assert picture.size == (image["width"], image["height"])


def test_tight_box_when_present_square_window_with_a_warning_otherwise(cropped, tmp_path):
    lines = records(cropped)[:3]
    lines[0]["tight"] = {"x": 3.5, "y": 4.0, "w": 10.0, "h": 6.25}
    for key in ("box_kind", "window", "tight", "map"):  # a record made before fcnx crop --box tight
        lines[1].pop(key, None)
    # as `fcnx crop --box tight` writes it: x, y, w, h the tight box, both kinds as lists
    window = [lines[2][k] for k in "xywh"]
    lines[2] |= {
        "box_kind": "tight",
        "window": window,
        "tight": [1.0, 2.0, 3.0, 4.0],
        "x": 1.0,
        "y": 2.0,
        "w": 3.0,
        "h": 4.0,
    }
    source = tmp_path / "src"
    source.mkdir()
    (source / "boxes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    result = run("export", source, "--format", "coco", "--box", "tight", "-o", tmp_path / "t")
    assert result.exit_code == 0, result.output
    assert "warning: " in result.output and "1 box(es) have no tight box" in result.output
    anns = json.loads((tmp_path / "t" / "labels.json").read_text())["annotations"]
    assert [a["bbox"] for a in anns] == [[3.5, 4.0, 10.0, 6.25], [lines[1][k] for k in "xywh"], [1.0, 2.0, 3.0, 4.0]]
    assert run("export", source, "--format", "coco", "--box", "square", "-o", tmp_path / "s").exit_code == 0
    anns = json.loads((tmp_path / "s" / "labels.json").read_text())["annotations"]
    assert anns[2]["bbox"] == window and anns[0]["bbox"] == [lines[0][k] for k in "xywh"]
    assert run("export", source, "--format", "coco", "-o", tmp_path / "own").exit_code == 0  # as cropped
    anns = json.loads((tmp_path / "own" / "labels.json").read_text())["annotations"]
    assert [a["bbox"] for a in anns] == [[lines[k][c] for c in "xywh"] for k in range(3)]
    assert anns[2]["bbox"] == [1.0, 2.0, 3.0, 4.0]


def test_suspects_export_marks_each_suspect_image(cropped, tmp_path):
    from pycocotools.coco import COCO

    first, second = records(cropped)[:2]
    rows = [
        {
            "path": r["path"],
            "label": r["label"],
            "other_category": other,
            "other_votes": 2,
            "other_mean_confidence": 0.75,
            "gap": 0.5,
            **{k: r[k] for k in "xywh"},
        }
        for r, other in ((first, second["category"]), (second, first["category"]))
    ]
    folder = tmp_path / "suspects"
    folder.mkdir()
    (folder / "suspects.json").write_text(json.dumps({"images": 10, "signal": "graded", "suspects": rows}))
    assert run("export", folder, "--format", "coco", "-o", tmp_path / "c").exit_code == 0
    coco = COCO(str(tmp_path / "c" / "labels.json"))
    for image in coco.loadImgs(coco.getImgIds()):
        row = rows[image["id"] - 1]
        assert image["suspect"] is True and image["label"] == row["label"] and image["seen"] == row["other_category"]
        assert image["file_name"].endswith(Path(row["path"]).name) and "/" in image["file_name"]
        (ann,) = coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]]))
        assert ann["bbox"] == [row[k] for k in "xywh"] and ann["suspect"] is True and ann["score"] == 0.75
    assert run("export", folder, "--format", "voc", "-o", tmp_path / "v").exit_code == 0
    xml = next((tmp_path / "v" / "Annotations").rglob("*.xml"))
    assert ET.parse(xml).getroot().findtext("suspect") == "true"


def test_exporting_again_replaces_its_own_files_and_never_others(cropped, tmp_path):
    dest = tmp_path / "d"
    assert run("export", cropped, "--format", "yolo", "-o", dest).exit_code == 0
    assert run("export", cropped, "--format", "coco", "-o", dest).exit_code == 0
    assert sorted(p.name for p in dest.iterdir()) == [".fcnx-export.json", "labels.json"]  # yolo's files gone
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    result = run("export", cropped, "--format", "coco", "-o", other)
    assert result.exit_code != 0 and "holds other files" in result.output
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"path": "a.png", "x": 1}\n', "line 1: not a box record"),
        ("[1, 2]\n", "line 1: not a box record"),
        (
            '{"path": "a.png", "category": "c", "width": 9, "height": 9, "x": 0, "y": 0, "w": 0, "h": 3}\n',
            "invalid box",
        ),
    ],
)
def test_bad_boxes_are_one_line_errors_naming_the_file(tmp_path, content, message):
    (tmp_path / "boxes.jsonl").write_text(content)
    result = run("export", tmp_path, "--format", "coco", "-o", tmp_path / "x")
    assert result.exit_code != 0 and message in result.output and "boxes.jsonl" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "x").exists()


def test_a_folder_without_boxes_is_refused(tmp_path):
    result = run("export", tmp_path, "--format", "voc", "-o", tmp_path / "x")
    assert result.exit_code != 0 and "neither boxes.jsonl" in result.output


def test_export_imports_no_deep_learning_framework(cropped, tmp_path):
    code = (
        "import sys; from fcnx.cli import main; sys.argv = ['fcnx', 'export', sys.argv[1], '--format', 'voc', "
        "'-o', sys.argv[2]]\ntry:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "assert not {'torch', 'tensorflow', 'timm'} & set(sys.modules), 'framework imported'"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(cropped), str(tmp_path / "v")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_fitted_box_when_present_else_the_tight_box_else_the_window_with_a_warning_each(cropped, tmp_path):
    lines = records(cropped)[:3]
    window = [lines[0][k] for k in "xywh"]
    # as `fcnx crop --box fitted` writes it; then a tight record (no fitted box); then one made before --box
    lines[0] |= {"box_kind": "fitted", "window": window, "tight": [1, 2, 30, 40], "fitted": [2.5, 3.0, 20.0, 30.0]}
    lines[0] |= dict(zip("xywh", [2.5, 3.0, 20.0, 30.0]))
    lines[1] |= {"box_kind": "tight", "window": window, "tight": [5.0, 6.0, 7.0, 8.0], "fitted": None}
    lines[1] |= dict(zip("xywh", [5.0, 6.0, 7.0, 8.0]))
    for key in ("box_kind", "window", "tight", "fitted", "map"):
        lines[2].pop(key, None)
    source = tmp_path / "src"
    source.mkdir()
    (source / "boxes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    result = run("export", source, "--format", "coco", "--box", "fitted", "-o", tmp_path / "f")
    assert result.exit_code == 0, result.output
    assert "1 box(es) have no fitted box (not cropped with --box fitted?): exported their tight box" in result.output
    assert "1 box(es) have no fitted box (not cropped with --box fitted?): exported their square window" in (
        result.output
    )
    anns = json.loads((tmp_path / "f" / "labels.json").read_text())["annotations"]
    assert [a["bbox"] for a in anns] == [[2.5, 3.0, 20.0, 30.0], [5.0, 6.0, 7.0, 8.0], [lines[2][k] for k in "xywh"]]
    assert run("export", source, "--format", "coco", "--box", "square", "-o", tmp_path / "s").exit_code == 0
    anns = json.loads((tmp_path / "s" / "labels.json").read_text())["annotations"]
    assert [a["bbox"] for a in anns][:2] == [window, window]
