"""Hostile values for --kernel and other options, FIFOs or folders where a command reads a file, output folders
through links or over a user's files, links among class folders, degenerate images and tampered journals."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from hostile_helpers import COLORS, NETS, dataset, invoke, last_line
from PIL import Image
from tiny_backbones import color_checkpoint

from fcnx.io import files

pytestmark = pytest.mark.usefixtures("no_hang")


@pytest.fixture
def nets(tmp_path, tiny_registry) -> list[str]:
    weights = {n: color_checkpoint(tmp_path / f"{n}.safetensors", n, input_size=s) for n, s in NETS.items()}
    return ["--nets", ",".join(NETS), *(a for n, p in weights.items() for a in ("--weights", f"{n}={p}"))]


def crop(nets, *args) -> object:
    return invoke("crop", *nets, "--workers", "0", "--max-scale", "1.5", *args)


@pytest.mark.parametrize("kernel", ["10000000000000", "4097"])
def test_a_kernel_over_the_largest_input_size_is_one_line_before_any_allocation(tmp_path, nets, kernel):
    dataset(tmp_path / "photos")
    result = crop(nets, "--kernel", kernel, tmp_path / "photos", "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert last_line(result) == f"Error: kernel {kernel} is too large for tiny0: at most 4096 pixels a side"


def test_a_small_pixel_budget_does_not_refuse_the_kernel(tmp_path, nets, monkeypatch):
    dataset(tmp_path / "photos")
    monkeypatch.setenv("FCNX_MAX_PIXELS", str(200 * 170))  # the images' own size: they are upscaled to the kernel
    result = crop(nets, "--kernel", "256", "--category", "red", tmp_path / "photos", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output


def test_a_kernel_of_more_digits_than_python_converts_is_one_line(nets):
    result = invoke("crop", *nets, "--kernel", "9" * 5000, "x.png", "-o", "out")
    assert result.exit_code == 2
    assert (
        last_line(result)
        == "Error: Invalid value for '--kernel': 999999999999... (5000 digits) is too large a side in pixels."
    )


@pytest.mark.parametrize("value", [" native\n", "NATIVE"])
def test_native_is_read_like_a_number_without_the_spaces_around_it_and_the_help_spells_it(tmp_path, nets, value):
    dataset(tmp_path / "photos")
    result = crop(nets, "--category", "red", "--kernel", value, tmp_path / "photos", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "out" / ".fcnx-crop.json").read_text())["settings"]["kernels"] == [128, 160]
    assert "--kernel N|native " in invoke("crop", "--help").output  # not N|NATIVE, which is refused


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_evaluate_refuses_boxes_that_are_not_a_file_in_one_line(tmp_path, nets, kind):
    data = dataset(tmp_path / "data")
    boxes = Path("/dev/null") if kind == "device" else tmp_path / "boxes.jsonl"  # a FIFO blocks for ever
    if kind == "fifo":
        os.mkfifo(boxes)
    result = invoke("evaluate", *nets, "--kernel", "native", "--split", "all", "--data", data, "--crops", boxes)
    assert result.exit_code == 2
    assert last_line(result) == f"Error: {boxes}: cannot read boxes (OSError: not a regular file)"


@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_crop_refuses_a_journal_that_is_not_a_file_naming_it_and_keeping_the_outdir(tmp_path, nets, kind):
    photos, out = dataset(tmp_path / "photos"), tmp_path / "out"
    assert crop(nets, "--kernel", "native", photos, "-o", out).exit_code == 0
    (out / "boxes.jsonl").unlink()
    os.mkfifo(out / "boxes.jsonl") if kind == "fifo" else (out / "boxes.jsonl").mkdir()
    before = sorted(p.name for p in out.iterdir())
    result = crop(nets, "--kernel", "native", photos, "-o", out)
    assert result.exit_code == 2
    assert last_line(result) == (
        f"Error: {out / 'boxes.jsonl'}: is not a regular file (a FIFO, a folder?): move it away, or choose another OUTDIR"
    )
    assert sorted(p.name for p in out.iterdir()) == before


@pytest.mark.parametrize(
    ("kernel", "why"), [(0, "kernel 0 is not a side in pixels"), ("224", "kernel '224' is not a side in pixels")]
)
def test_an_ensemble_file_with_a_bad_kernel_is_one_line_naming_it(tmp_path, nets, kernel, why):
    manifest = tmp_path / "ensemble.json"
    manifest.write_text(json.dumps({"members": [], "kernel": kernel, "config": {}}))
    result = invoke("crop", "--ensemble", manifest, "x.png", "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert last_line(result) == f"Error: {manifest}: not an ensemble file of fcnx train --nets (ValueError: {why})"


def test_an_ensemble_file_that_is_a_fifo_is_one_line(tmp_path, nets):
    os.mkfifo(tmp_path / "ensemble.json")
    result = invoke("crop", "--ensemble", tmp_path / "ensemble.json", "x.png", "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert last_line(result) == (
        f"Error: {tmp_path / 'ensemble.json'}: not an ensemble file of fcnx train --nets (OSError: not a regular file)"
    )


def test_evaluate_skips_a_box_outside_its_image_naming_it(tmp_path, nets):
    data, out = dataset(tmp_path / "data"), tmp_path / "crops"
    assert crop(nets, "--kernel", "native", data, "-o", out).exit_code == 0
    lines = (out / "boxes.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    stale = next(r for r in records if r["file"] == "red/0.png")
    stale.update(x=5000.0, y=10.0)  # a box of a larger version of the image
    (out / "boxes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    result = invoke(
        "evaluate", *nets, "--kernel", "native", "--split", "all", "--data", data, "--crops", out / "boxes.jsonl"
    )
    assert result.exit_code == 1
    w, h = stale["w"], stale["h"]
    assert [line for line in result.stderr.splitlines() if line.startswith("error: ")] == [
        f"error: {data / 'red' / '0.png'}: its box (x=5000, y=10, w={w:g}, h={h:g}) lies outside the 200x170 image: "
        f"a box of another version of it?"
    ]


@pytest.mark.parametrize("kernel", [[], ["--kernel", "native"]])
def test_a_checkpoint_trained_under_the_smallest_input_is_named(tmp_path, tiny_registry, kernel):
    small = color_checkpoint(tmp_path / "small.safetensors", "tiny0", input_size=8)
    photos = dataset(tmp_path / "photos")
    result = invoke("crop", "--nets", "tiny0", "--weights", f"tiny0={small}", *kernel, photos, "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert last_line(result) == (
        f"Error: {small}: trained at 8 pixels, under tiny0's smallest input side 32: give a kernel"
    )


@pytest.mark.parametrize("command", ["evaluate", "suspects"])
@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EACCES])
def test_outputs_that_cannot_be_written_are_one_line(tmp_path, nets, monkeypatch, command, error):
    data, out = dataset(tmp_path / "data"), tmp_path / "out"

    def refuse(folder):
        raise OSError(error, os.strerror(error))

    monkeypatch.setattr(files, "_temporary", refuse)  # every atomic write of the job fails so
    extra = ["--split", "all"] if command == "evaluate" else []
    result = invoke(command, *nets, "--kernel", "native", *extra, "--data", data, "-o", out)
    assert result.exit_code == 1
    assert last_line(result) == f"Error: {out}: cannot write outputs ({os.strerror(error)})"


def test_export_outputs_that_cannot_be_written_are_one_line(tmp_path, nets, monkeypatch):
    out = tmp_path / "crops"
    assert crop(nets, "--kernel", "native", dataset(tmp_path / "photos"), "-o", out).exit_code == 0
    missing = invoke("export", out, "--format", "coco", "-o", "/proc/fcnx-export")
    assert missing.exit_code == 1
    assert last_line(missing) == "Error: /proc/fcnx-export: cannot write outputs (No such file or directory)"

    def refuse(folder):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files, "_temporary", refuse)
    full = invoke("export", out, "--format", "voc", "-o", tmp_path / "voc")
    assert full.exit_code == 1
    assert last_line(full) == f"Error: {tmp_path / 'voc'}: cannot write outputs (No space left on device)"


@pytest.mark.parametrize("kind", ["fifo", "binary"])
def test_export_refuses_a_class_list_it_cannot_read_in_one_line(tmp_path, nets, kind):
    out, classes = tmp_path / "crops", tmp_path / "classes.txt"
    assert crop(nets, "--kernel", "native", dataset(tmp_path / "photos"), "-o", out).exit_code == 0
    os.mkfifo(classes) if kind == "fifo" else classes.write_bytes(b"red\n\xff\xfe\n")
    result = invoke("export", out, "--format", "coco", "--classes", classes, "-o", tmp_path / "coco")
    assert result.exit_code == 2
    why = (
        "not a regular file"
        if kind == "fifo"
        else "'utf-8' codec can't decode byte 0xff in position 4: invalid start byte"
    )
    assert last_line(result) == f"Error: {classes}: cannot read the class list ({why})"


def test_export_refuses_a_class_list_naming_a_class_twice(tmp_path, nets):
    out, classes = tmp_path / "crops", tmp_path / "classes.txt"
    assert crop(nets, "--kernel", "native", dataset(tmp_path / "photos"), "-o", out).exit_code == 0
    classes.write_text("red\ngreen\n red\nblue\nnone\n")
    result = invoke("export", out, "--format", "coco", "--classes", classes, "-o", tmp_path / "coco")
    assert result.exit_code == 2
    assert last_line(result) == f"Error: {classes}: class list names 'red' twice: each class is one category id"
    assert not (tmp_path / "coco").exists()


def test_a_fifo_among_the_dataset_lists_is_not_copied_and_cannot_block_the_end_of_a_crop(tmp_path, nets):
    root, out = tmp_path / "food", tmp_path / "out"
    dataset(root / "images")
    (root / "meta").mkdir()
    (root / "meta" / "classes.txt").write_text("".join(f"{name}\n" for name in COLORS))
    (root / "meta" / "test.txt").write_text("".join(f"{name}/0\n" for name in COLORS))
    os.mkfifo(root / "meta" / "notes.txt")
    result = crop(nets, "--kernel", "native", "--split", "test", root, "-o", out)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (out / "meta").iterdir()) == ["classes.txt", "test.txt"]
    assert (out / "meta" / "test.txt").read_bytes() == (root / "meta" / "test.txt").read_bytes()


# --------------------------------------------------------------------------- degenerate images


def test_a_box_under_one_pixel_is_logged_as_the_pixel_crop_and_evaluate_cut(tmp_path, nets):
    data, out = tmp_path / "data", tmp_path / "out"
    (data / "red").mkdir(parents=True)
    for name, (height, width) in {"one": (1, 1), "row": (1, 50), "column": (40, 1)}.items():
        Image.new("RGB", (width, height), COLORS["red"]).save(data / "red" / f"{name}.png")
    result = crop(
        nets, "--kernel", "native", "--box", "tight", "--category", "red", "--max-scale", "3", data, "-o", out
    )
    assert result.exit_code == 0, result.output
    records = {r["file"]: r for r in map(json.loads, (out / "boxes.jsonl").read_text().splitlines())}
    assert {f: r["w"] < 1 and r["h"] < 1 for f, r in records.items()} == {
        "red/column.png": True,
        "red/one.png": True,
        "red/row.png": True,
    }  # the tight boxes are smaller than a pixel of these images
    row = records["red/row.png"]
    assert [line.split(", votes")[0] for line in result.stderr.splitlines() if line.startswith("red/")] == [
        "red/column.png: red at x=0 y=0 w=1 h=1",  # the pixels cut, as the crop: never w=0 h=0
        "red/one.png: red at x=0 y=0 w=1 h=1",
        f"red/row.png: red at x={int(row['x'])} y=0 w=1 h=1",  # the pixel the sub-pixel box starts in
    ]
    assert int(row["x"]) > 0
    assert {f: Image.open(out / f).size for f in records} == {f: (1, 1) for f in records}
    evaluated = invoke(
        "evaluate", *nets, "--kernel", "native", "--split", "all", "--data", data, "--crops", out / "boxes.jsonl"
    )
    assert evaluated.exit_code == 0, evaluated.output
    assert "error" not in evaluated.stderr
    suspected = invoke("suspects", *nets, "--kernel", "native", "--data", data, "-o", tmp_path / "review")
    assert suspected.exit_code == 0, suspected.output
    assert last_line(suspected) == f"suspects: 0 of 3 image(s); see {tmp_path / 'review' / 'suspects.html'}"


# --------------------------------------------------------------------------- output folders that are links


def outdir_link(tmp_path: Path, kind: str) -> tuple[Path, Path, str]:
    """An OUTDIR through a link of ``kind``: (OUTDIR, the part named in the error, the line's reason)."""
    link = tmp_path / "link"
    if kind == "file":
        (tmp_path / "notes.txt").write_text("user data\n")
        link.symlink_to(tmp_path / "notes.txt")
        return link / "out", link, f"is a symbolic link to a regular file ({tmp_path / 'notes.txt'})"
    link.symlink_to(tmp_path / "elsewhere" / "out")
    outdir = link if kind == "dangling" else link / "sub"
    return (
        outdir,
        link,
        f"is a symbolic link that leads nowhere (dangling, or a loop) ({tmp_path / 'elsewhere' / 'out'})",
    )


@pytest.mark.parametrize("kind", ["dangling", "dangling above", "file"])
@pytest.mark.parametrize("command", ["crop", "evaluate", "suspects", "export", "train"])
def test_an_outdir_through_a_dangling_link_or_a_link_to_a_file_is_refused_and_nothing_is_created(
    tmp_path, nets, kind, command
):
    data = dataset(tmp_path / "data")
    if command == "export":
        assert crop(nets, "--kernel", "native", data, "-o", tmp_path / "crops").exit_code == 0
    outdir, named, why = outdir_link(tmp_path, kind)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    args = {
        "crop": ["crop", *nets, "--workers", "0", "--kernel", "native", data],
        "evaluate": ["evaluate", *nets, "--kernel", "native", "--split", "all", "--data", data],
        "suspects": ["suspects", *nets, "--kernel", "native", "--data", data],
        "export": ["export", tmp_path / "crops", "--format", "coco"],
        "train": ["train", "--net", "tiny0", "--weights", "none", "--epochs", "1", "--data", data],
    }[command]
    result = invoke(*args, "-o", outdir)
    assert result.exit_code == 2
    assert last_line(result) == (
        f"Error: {named}: {why}: fcnx does not create or write through it; create the folder, or choose another "
        f"output folder"
    )
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert not (tmp_path / "elsewhere").exists()


def test_bench_data_refuses_a_dangling_link_before_reading_anything(tmp_path):
    (tmp_path / "out").symlink_to(tmp_path / "elsewhere")
    result = invoke("bench", "data", "-o", tmp_path / "out", "--source", tmp_path / "no-fashion-mnist")
    assert result.exit_code == 2
    assert last_line(result) == (
        f"Error: {tmp_path / 'out'}: is a symbolic link that leads nowhere (dangling, or a loop) "
        f"({tmp_path / 'elsewhere'}): fcnx does not create or write through it; create the folder, or choose "
        f"another output folder"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_an_outdir_that_is_a_link_to_a_folder_is_written_there(tmp_path, nets):
    (tmp_path / "scratch").mkdir()
    (tmp_path / "out").symlink_to(tmp_path / "scratch", target_is_directory=True)
    result = crop(nets, "--kernel", "native", dataset(tmp_path / "data"), "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out").is_symlink()
    assert (tmp_path / "scratch" / "boxes.jsonl").is_file()


# --------------------------------------------------------------------------- weight files that are not files


@pytest.mark.parametrize(
    ("kind", "what"), [("fifo", "a named pipe"), ("folder", "a folder"), ("device", "a character device")]
)
@pytest.mark.parametrize("command", ["crop", "evaluate", "train"])
def test_a_weight_file_that_is_not_a_regular_file_says_what_it_is_and_is_never_opened(
    tmp_path, nets, kind, what, command
):
    data, weights = dataset(tmp_path / "data"), tmp_path / "tiny0.safetensors"
    weights.unlink()
    {"fifo": lambda: os.mkfifo(weights), "folder": weights.mkdir, "device": lambda: weights.symlink_to("/dev/zero")}[
        kind
    ]()
    args = {
        "crop": [
            "crop",
            "--nets",
            "tiny0",
            "--weights",
            f"tiny0={weights}",
            "--workers",
            "0",
            data,
            "-o",
            tmp_path / "out",
        ],
        "evaluate": ["evaluate", "--nets", "tiny0", "--weights", f"tiny0={weights}", "--split", "all", "--data", data],
        "train": ["train", "--net", "tiny0", "--weights", weights, "--data", data, "-o", tmp_path / "run"],
    }[command]
    result = invoke(*args)  # a FIFO opened would block: the no_hang alarm fails the test
    assert result.exit_code == 1
    assert last_line(result) == f"Error: {weights}: is {what}, not a regular file: not opened as weights"
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- links among a dataset's class folders


def test_a_class_folder_link_is_skipped_with_a_warning_by_evaluate_as_crop_skips_it(tmp_path, nets):
    data, outside = dataset(tmp_path / "data"), tmp_path / "private"
    outside.mkdir()
    Image.new("RGB", (200, 170), COLORS["red"]).save(outside / "secret.png")
    (data / "zz").symlink_to(outside, target_is_directory=True)
    result = invoke("evaluate", *nets, "--kernel", "native", "--split", "all", "--data", data, "-o", tmp_path / "ev")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[0] == (
        f"evaluate: warning: {data}: 1 link(s) to folders skipped, not class folders (links are not followed): "
        f"zz -> {outside}"
    )
    rows = json.loads((tmp_path / "ev" / "evaluation.json").read_text())["rows"]
    assert [row["images"] for row in rows] == [len(COLORS)] * 3  # tiny0, tiny_s16, the ensemble: not the secret
    cropped = crop(nets, "--kernel", "native", data, "-o", tmp_path / "crops")
    assert cropped.exit_code == 0, cropped.output
    assert "secret" not in (tmp_path / "crops" / "boxes.jsonl").read_text()


@pytest.mark.parametrize("command", ["crop", "evaluate"])
def test_a_food101_class_folder_link_is_refused_in_one_line(tmp_path, nets, command):
    root, elsewhere = tmp_path / "food", dataset(tmp_path / "elsewhere")
    dataset(root / "images")
    (root / "meta").mkdir()
    (root / "meta" / "classes.txt").write_text("".join(f"{name}\n" for name in COLORS))
    (root / "meta" / "test.txt").write_text("".join(f"{name}/0\n" for name in COLORS))
    for path in (root / "images" / "red").iterdir():
        path.unlink()
    (root / "images" / "red").rmdir()
    (root / "images" / "red").symlink_to(elsewhere / "red", target_is_directory=True)
    args = ["crop", *nets, "--workers", "0", "--kernel", "native", root, "-o", tmp_path / "out"]
    if command == "evaluate":
        args = ["evaluate", *nets, "--kernel", "native", "--split", "test", "--data", root]
    result = invoke(*args)
    assert result.exit_code == 2
    assert last_line(result) == (
        f"Error: {root / 'images' / 'red'}: is a link to a folder ({elsewhere / 'red'}): class folders are not "
        f"followed through links; move or copy the folder into images/"
    )


# --------------------------------------------------------------------------- training options


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--lr", "inf"),
        ("--lr", "nan"),
        ("--finetune-lr", "inf"),
        ("--weight-decay", "nan"),
        ("--val-fraction", "nan"),
        ("--crop-jitter", "inf"),
        ("--crop-scale", "nan"),
    ],
)
def test_train_refuses_a_number_that_is_not_finite_before_it_trains_nan_weights(tmp_path, option, value):
    data = dataset(tmp_path / "data")
    result = invoke("train", "--net", "tiny0", "--data", data, "-o", tmp_path / "run", option, value)
    assert result.exit_code == 2
    assert last_line(result) == f"Error: Invalid value for '{option}': {value!r} is not a finite number."
    assert not (tmp_path / "run").exists()


def test_train_refuses_a_size_its_checkpoint_could_not_be_loaded_at(tmp_path):
    result = invoke(
        "train", "--net", "tiny0", "--data", dataset(tmp_path / "data"), "-o", tmp_path / "run", "--size", "4097"
    )
    assert result.exit_code == 2
    assert last_line(result) == "Error: Invalid value for '--size': 4097 is not in the range 8<=x<=4096."
    assert not (tmp_path / "run").exists()


def test_bench_localization_refuses_a_mislabel_share_that_is_not_finite(tmp_path):
    data = dataset(tmp_path / "data")
    result = invoke("bench", "localization", "--data", data, "-o", tmp_path / "results", "--mislabel-share", "nan")
    assert result.exit_code == 2
    assert last_line(result) == "Error: Invalid value for '--mislabel-share': 'nan' is not a finite number."


# --------------------------------------------------------------------------- outputs of evaluate and suspects


@pytest.mark.parametrize(
    ("command", "outputs"),
    [("evaluate", ["evaluation.csv", "evaluation.json"]), ("suspects", ["suspects.csv", "suspects.html"])],
)
def test_evaluate_and_suspects_never_replace_a_users_file_of_their_outputs_names(tmp_path, nets, command, outputs):
    data, out = dataset(tmp_path / "data"), tmp_path / "documents"
    out.mkdir()
    for name in outputs:
        (out / name).write_text("the user's own\n")
    extra = ["--split", "all"] if command == "evaluate" else []
    args = [command, *nets, "--kernel", "native", *extra, "--data", data, "-o", out]
    result = invoke(*args)
    assert result.exit_code == 2
    assert last_line(result) == (
        f"Error: {out} already holds {', '.join(outputs)}, not written by fcnx {command}: fcnx never replaces "
        f"them; move them or choose another OUTDIR"
    )
    assert sorted(p.name for p in out.iterdir()) == [".fcnx-lock", *outputs]  # the idle lock, empty
    assert all((out / name).read_text() == "the user's own\n" for name in outputs)
    for name in outputs:
        (out / name).unlink()
    assert invoke(*args).exit_code == 0
    first = {name: (out / name).stat().st_ino for name in outputs}
    assert invoke(*args).exit_code == 0  # a rerun replaces its own outputs
    assert all((out / name).stat().st_ino != first[name] for name in outputs)


@pytest.mark.parametrize("ensemble", [False, True])
def test_a_new_training_run_never_replaces_files_of_its_outputs_names(tmp_path, ensemble):
    data, out = dataset(tmp_path / "data"), tmp_path / "project"
    folder = out / "tiny0" if ensemble else out
    folder.mkdir(parents=True)
    for name in ("README.md", "metrics.csv", "notes.txt"):
        (folder / name).write_text("the user's own\n")
    net = ["--nets", "tiny0"] if ensemble else ["--net", "tiny0"]
    result = invoke("train", *net, "--weights", "none", "--data", data, "-o", out)
    assert result.exit_code == 2
    assert last_line(result) == (
        f"Error: {folder}: already holds metrics.csv, README.md, which a new run would replace: move them or "
        f"choose another folder"
    )
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == sorted(
        ([] if not ensemble else ["tiny0"])
        + [f"{'tiny0/' if ensemble else ''}{n}" for n in ("README.md", "metrics.csv", "notes.txt")]
    )
    assert all((folder / n).read_text() == "the user's own\n" for n in ("README.md", "metrics.csv", "notes.txt"))


# --------------------------------------------------------------------------- info and convert


@pytest.mark.parametrize("d_range", ["1:1000000000", "1:99999999999999999999999", "0:3", "-3:2", "5:2"])
def test_info_refuses_a_d_range_it_would_tabulate_for_ever_or_that_holds_no_pooled_size(tiny_registry, d_range):
    result = invoke("info", "tiny0", "--d-range", d_range)  # 1:1000000000 ran for ever
    assert result.exit_code == 2
    assert last_line(result) == f"Error: --d-range must be FIRST:LAST with 1 <= FIRST <= LAST <= 4096, got {d_range!r}"


@pytest.mark.parametrize(
    ("kind", "what"), [("fifo", "is a named pipe, not a regular file: not opened"), ("none", "no such file")]
)
def test_convert_says_what_a_keras_file_that_is_not_a_file_is(tmp_path, kind, what):
    keras_file = tmp_path / "model.keras"
    if kind == "fifo":
        os.mkfifo(keras_file)
    result = invoke("convert", keras_file, "-o", tmp_path / "model.safetensors")
    assert result.exit_code == 2
    assert last_line(result) == f"Error: {keras_file}: {what}"


def test_a_resume_file_that_is_a_fifo_is_named_so_and_never_opened(tmp_path):
    (tmp_path / "run").mkdir()
    os.mkfifo(tmp_path / "run" / "resume.safetensors")
    result = invoke("train", "--resume", "-o", tmp_path / "run")
    assert result.exit_code == 1
    assert last_line(result) == (
        f"Error: {tmp_path / 'run' / 'resume.safetensors'}: is a named pipe, not a regular file: not opened as weights"
    )


@pytest.mark.parametrize("fmt", ["coco", "voc", "yolo"])
def test_export_leaves_out_a_record_of_no_image_size_in_one_line(tmp_path, nets, fmt):
    data, out = dataset(tmp_path / "photos"), tmp_path / "crops"
    assert crop(nets, "--kernel", "native", data, "-o", out).exit_code == 0
    records = [json.loads(line) for line in (out / "boxes.jsonl").read_text().splitlines()]
    records[0]["width"] = 0  # yolo divided by it
    (out / "boxes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    result = invoke("export", out, "--format", fmt, "-o", tmp_path / "export")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"error: {records[0]['path']}: its record gives the image size 0x170: left out",
        "export: 1 unreadable image(s) left out",
    ]
    assert result.stdout == f"export: 3 image(s), 3 box(es), 4 categories as {fmt} in {tmp_path / 'export'}\n"


def test_a_crop_that_fails_at_the_end_releases_its_outdir_for_the_next_run_in_the_same_process(
    tmp_path, nets, monkeypatch
):
    from fcnx.jobs.outdir import reports

    photos, out = dataset(tmp_path / "photos"), tmp_path / "out"

    def broken(*_):
        raise RuntimeError("a bug while writing the gallery")

    monkeypatch.setattr(reports, "write_gallery", broken)
    with pytest.raises(RuntimeError, match="a bug while writing the gallery"):
        crop(nets, "--kernel", "native", "--gallery", photos, "-o", out)
    monkeypatch.undo()
    again = crop(nets, "--kernel", "native", "--gallery", photos, "-o", out)  # was: "in use by another run"
    assert again.exit_code == 0, again.output
    assert (out / "gallery.html").is_file()


def test_graded_suspects_never_list_an_image_whose_label_is_the_top_class_by_a_rounding_error(tmp_path, nets):
    data = tmp_path / "data"
    for name in ("red", "green"):
        (data / name).mkdir(parents=True)
        Image.new("RGB", (200, 170), COLORS[name]).save(data / name / "flat.png")  # every cell sure of the label
    result = invoke("suspects", *nets, "--kernel", "native", "--signal", "graded", "--data", data, "-o", tmp_path / "r")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "r" / "suspects.json").read_text())["suspects"] == []  # was green, "nets see green"


# --------------------------------------------------------------------------- names with newlines


def test_export_and_train_print_a_folder_with_a_newline_on_one_line(tmp_path, nets, tiny_train):
    odd = tmp_path / "two\nlines"
    data, out = dataset(odd / "data"), odd / "crops"
    assert crop(nets, "--kernel", "native", data, "-o", out).exit_code == 0
    exported = invoke("export", out, "--format", "coco", "-o", odd / "coco")
    assert exported.exit_code == 0, exported.output
    escaped = str(tmp_path / "two\\nlines")
    assert exported.stdout == f"export: 4 image(s), 4 box(es), 4 categories as coco in {escaped}/coco\n"
    fast = ["--size", "64", "--weights", "none", "--batch-size", "8", "--workers", "0", "--epochs", "1"]
    trained = invoke("train", "--net", tiny_train.name, "--data", data, "-o", odd / "run", *fast)
    assert trained.exit_code == 0, trained.output
    assert trained.stderr.splitlines()[0] == (
        f"{escaped}/data (folders, train): 4 images, 4 classes; 4 for training, 0 for validation"
    )
    assert trained.stdout == f"best: {escaped}/run/best.safetensors\n"
