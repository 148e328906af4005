"""``--kernel native``: each net at its own size (here a stride-32 net at 128 beside a stride-16 net at 160)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from tiny_backbones import color_checkpoint

from fcnx.cli import cli
from fcnx.engine.cropper import Cropper
from fcnx.engine.options import CropOptions
from fcnx.errors import UsageError


@pytest.fixture
def args(tmp_path, tiny_registry):
    weights = {
        name: color_checkpoint(tmp_path / f"{name}.safetensors", name, input_size=size)
        for name, size in (("tiny0", 128), ("tiny_s16", 160))
    }
    return weights, ["--nets", "tiny0,tiny_s16"] + [a for n, p in weights.items() for a in ("--weights", f"{n}={p}")]


SIDE = 150  # larger than the kernels at the largest level, where the colour nets see only red


def red_square(path, top: int, left: int, color: tuple[int, int, int] = (230, 20, 20)) -> None:
    pixels = np.full((200, 260, 3), 128, np.uint8)
    pixels[top : top + SIDE, left : left + SIDE] = color
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def test_crop_kernel_native_runs_each_net_at_its_size_and_records_the_kernels(tmp_path, args):
    weights, net_args = args
    for k, (top, left) in enumerate([(10, 20), (45, 100)]):
        red_square(tmp_path / "photos" / f"{k}.png", top, left)
    out = tmp_path / "out"
    base = ["crop", *net_args, "--workers", "0", "--max-scale", "1.5", "--category", "red"]
    result = CliRunner().invoke(cli, [*base, "--kernel", "native", str(tmp_path / "photos"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "nets tiny0, tiny_s16 at kernels 128, 160 on cpu" in result.stderr
    assert "trained at" not in result.stderr  # each net runs at the size it was trained at
    records = {r["file"]: r for r in map(json.loads, (out / "boxes.jsonl").read_text().splitlines())}
    library = Cropper.from_nets(["tiny0", "tiny_s16"], weights, kernel="native", device="cpu", max_scale=1.5)
    assert [f.kernel for f in library.ensemble.fcns] == [128, 160]
    for k, (top, left) in enumerate([(10, 20), (45, 100)]):
        (box,) = library.crop_image(tmp_path / "photos" / f"{k}.png", ["red"]).boxes
        record = records[f"{k}.png"]
        assert (record["x"], record["y"], record["w"], record["h"]) == (box.x, box.y, box.w, box.h)
        assert record["votes"] == 2  # both nets find the red square
        assert left < box.x + box.w / 2 < left + SIDE and top < box.y + box.h / 2 < top + SIDE  # centred on red
    settings = json.loads((out / ".fcnx-crop.json").read_text())["settings"]
    assert settings["kernel"] == 160 and settings["kernels"] == [128, 160]  # the reference: the stride-16 net
    again = CliRunner().invoke(cli, [*base, "--kernel", "160", str(tmp_path / "photos"), "-o", str(out)])
    assert (
        again.exit_code == 2
        and "holds boxes made with other settings (kernels: [128, 160] there, [160, 160] now)" in again.stderr
    )


@pytest.mark.parametrize("value", ["big", "0", "-3", "1.5", "²"])
def test_a_bad_kernel_is_one_line(args, value):
    result = CliRunner().invoke(cli, ["crop", *args[1], "--kernel", value, "x.png", "-o", "out"])
    assert result.exit_code == 2
    assert f"Invalid value for '--kernel': {value!r} is neither a side in pixels (>= 1) nor 'native'." in result.stderr


def test_ray_refuses_native_kernels_in_one_line_before_writing_anything(tmp_path, args):
    pytest.importorskip("ray")
    red_square(tmp_path / "photos" / "0.png", 10, 20)
    out = tmp_path / "out"
    line = "Error: --engine ray runs the nets at one common kernel, not 'native': give --kernel N\n"
    result = CliRunner().invoke(
        cli, ["crop", *args[1], "--kernel", "native", "--engine", "ray", str(tmp_path / "photos"), "-o", str(out)]
    )
    assert result.exit_code == 2 and result.stderr == line
    assert not out.exists()  # refused where the options are built: OUTDIR is not even made
    with pytest.raises(UsageError, match="--engine ray runs the nets at one common kernel, not 'native'"):
        CropOptions(("tiny0",), {}, "native", engine="ray")


def test_evaluate_and_suspects_run_a_mixed_ensemble(tmp_path, args):
    root = tmp_path / "data"
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "classes.txt").write_text("red\ngreen\nblue\n")
    red_square(root / "images" / "red" / "0.png", 30, 40)
    red_square(root / "images" / "green" / "1.png", 20, 90, color=(20, 230, 20))
    red_square(root / "images" / "blue" / "2.png", 50, 100)  # a wrong label: no net finds blue
    (root / "meta" / "test.txt").write_text("red/0.png\ngreen/1.png\nblue/2.png\n")
    result = CliRunner().invoke(
        cli,
        ["evaluate", *args[1], "--kernel", "native", "--data", str(root), "--crop", "-q", "-o", str(tmp_path / "ev")],
    )
    assert result.exit_code == 0, result.output
    rows = {r["model"]: r for r in json.loads((tmp_path / "ev" / "evaluation.json").read_text())["rows"]}
    assert set(rows) == {"tiny0", "tiny_s16", "ensemble"}
    for row in rows.values():  # all but the planted image, whole or cropped
        assert (row["images"], row["original_top1"], row["cropped_top1"]) == (
            3,
            pytest.approx(2 / 3),
            pytest.approx(2 / 3),
        )
    result = CliRunner().invoke(
        cli, ["suspects", *args[1], "--kernel", "native", "--data", str(root), "-q", "-o", str(tmp_path / "sus")]
    )
    assert result.exit_code == 0, result.output
    [suspect] = json.loads((tmp_path / "sus" / "suspects.json").read_text())["suspects"]
    assert suspect["path"].endswith("blue/2.png")
    assert (suspect["label"], suspect["other_category"], suspect["other_votes"]) == ("blue", "red", 2)
