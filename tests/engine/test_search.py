"""The coarse-to-fine search: exact sub-windows of the tiny nets, the full search's boxes on the demo canvases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from fcnx.cli import cli
from fcnx.engine import search
from fcnx.engine.cropper import Cropper
from fcnx.engine.ensemble import load_ensemble, resize
from fcnx.errors import UsageError
from fcnx.io.images import discover, load_rgb

NETS = ["tiny_vgg", "tiny_resnet", "tiny_inception"]


def _demo() -> Path:
    import fcnx_tiny

    return Path(fcnx_tiny.__file__).parent / "demo"


def _level_pixels() -> torch.Tensor:
    """A demo canvas as a 1 x 3 x H x W uint8 tensor."""
    pixels, _ = load_rgb(sorted((_demo() / "images").rglob("*.png"))[0], 56)
    return torch.from_numpy(pixels).permute(2, 0, 1)[None].contiguous()


@pytest.mark.parametrize("net", ["tiny_vgg", "tiny_resnet", "tiny_inception", "tiny_mobilenet"])
def test_sub_window_cells_equal_the_whole_level_beyond_the_measured_margin(one_thread, net):
    ensemble = load_ensemble([net], kernel=56, device="cpu")
    pixels, scaled = _level_pixels(), (243, 317)  # a level of 24 x 33 cells: interior cells cut on all sides
    whole = ensemble.probabilities(resize(pixels, scaled))[0].numpy()
    wanted = np.zeros(ensemble.cells(scaled), dtype=bool)
    wanted[10:12, 15:17] = True
    margin = search.MARGINS[net]
    diffs = {}
    for m in {margin, max(0, margin - 1)}:
        partial = search.PartialLevel(ensemble, pixels, scaled, m)
        partial.fill(wanted)
        assert 0 < partial.computed < 0.6 * scaled[0] * scaled[1] and partial.known[wanted].all()
        assert not partial.known[0].any() and not partial.known[-1].any()  # cut borders on every side
        diffs[m] = np.abs(partial.probs[:, :, partial.known] - whole[:, :, partial.known]).max()
    assert diffs[margin] <= 1e-5
    if margin:  # one cell less is not enough: the margin is the one needed
        assert diffs[margin - 1] > 1e-5


def _forward_pixels(cropper: Cropper) -> list[int]:
    """Make ``cropper``'s ensemble record the pixels of every input it runs."""
    seen: list[int] = []
    forward = cropper.ensemble.probabilities_of

    def probabilities_of(inputs: dict, size: tuple[int, int], exact: bool = False) -> torch.Tensor:
        seen.append(sum(x.shape[0] * x.shape[-2] * x.shape[-1] for x in inputs.values()))
        return forward(inputs, size, exact)

    cropper.ensemble.probabilities_of = probabilities_of  # type: ignore[method-assign]
    return seen


@pytest.mark.parametrize("rule", ["paper", "votes-first"])
def test_coarse_to_fine_gives_the_full_search_boxes_on_the_demo_canvases(one_thread, rule):
    full = Cropper(load_ensemble(NETS, kernel=56, device="cpu"), selection=rule)
    fine = Cropper(load_ensemble(NETS, kernel=56, device="cpu"), selection=rule, search="coarse-to-fine")
    pixels = {"full": _forward_pixels(full), "fine": _forward_pixels(fine)}
    items = discover([_demo()])
    for item in items:
        (want,) = full.crop_image(item.path, [item.label or ""]).boxes
        (got,) = fine.crop_image(item.path, [item.label or ""]).boxes
        assert (got.level, got.cell, got.votes, got.window, got.tight) == (
            want.level,
            want.cell,
            want.votes,
            want.window,
            want.tight,
        )
        assert got.net_scores == pytest.approx(want.net_scores, abs=1e-5)  # the same cells, cut out of the level
    assert sum(pixels["fine"]) <= sum(pixels["full"])
    # without a category the search is the full one (the category comes from every level's every cell)
    (want,) = full.crop_image(items[0].path).boxes
    (got,) = fine.crop_image(items[0].path).boxes
    assert (got.category, got.level, got.cell, got.tight) == (want.category, want.level, want.cell, want.tight)


def test_crop_cli_coarse_to_fine_writes_the_full_search_boxes(one_thread, tmp_path):
    runs = {}
    for name in ("full", "coarse-to-fine"):
        out = tmp_path / name
        argv = ["crop", "--nets", ",".join(NETS), str(_demo()), "-o", str(out), "--device", "cpu", "--dry-run"]
        result = CliRunner().invoke(cli, [*argv, "--search", name, "--box", "tight"])
        assert result.exit_code == 0, result.output
        runs[name] = [json.loads(line) for line in (out / "boxes.jsonl").read_text().splitlines()]
    assert len(runs["full"]) == 10
    for got, want in zip(runs["coarse-to-fine"], runs["full"], strict=True):
        scores = [k for k in want if "score" in k or "confidence" in k]
        assert {k: v for k, v in got.items() if k not in scores} == {k: v for k, v in want.items() if k not in scores}
        assert _flat([got[k] for k in scores]) == pytest.approx(_flat([want[k] for k in scores]), abs=1e-5)
    again = CliRunner().invoke(cli, [*argv, "--search", "full", "--box", "tight"])
    assert again.exit_code != 0 and "search" in again.output  # an OUTDIR keeps its search


def _flat(values: list) -> list[float]:
    """Numbers and dicts of numbers as one list of numbers (dicts in key order)."""
    return [x for v in values for x in ([v[k] for k in sorted(v)] if isinstance(v, dict) else [v])]


def test_on_an_elongated_image_the_chosen_cell_and_its_tight_box_read_only_exact_values(
    one_thread, tmp_path, monkeypatch
):
    """Three canvases side by side: the large levels are computed in part; what the box reads is the full level's."""
    from PIL import Image

    from fcnx.io.images import ImageItem
    from fcnx.method import evidence

    items = discover([_demo()])
    parts = [np.asarray(Image.open(item.path).convert("RGB")) for item in items[:3]]
    height = min(p.shape[0] for p in parts)
    path = tmp_path / "wide.png"
    Image.fromarray(np.concatenate([p[:height] for p in parts], axis=1)).save(path)
    label = items[0].label or ""
    fine = Cropper(load_ensemble(NETS, kernel=56, device="cpu"), search="coarse-to-fine")
    full = Cropper(load_ensemble(NETS, kernel=56, device="cpu"))
    seen = {"full": _forward_pixels(full), "fine": _forward_pixels(fine)}
    (box,) = fine.crop_image(path, [label]).boxes
    size, levels, whole, _ = full.label_levels(ImageItem(path, path.name, label), label)
    assert sum(seen["fine"]) < 0.9 * sum(seen["full"])
    assert list(box.net_scores.values()) == pytest.approx(whole[box.level].prob[:, box.cell[0], box.cell[1]], abs=1e-5)
    means = [level.summed() / level.nets for level in whole]
    sizes = [scaled for _, scaled in levels]
    expected = evidence.tight(means, sizes, size, 56, 8, box.level, box.window)
    assert box.tight == pytest.approx(expected.box, abs=1e-6)
    # a net whose margin was not measured: the full search
    monkeypatch.delitem(search.MARGINS, "tiny_resnet")
    unmeasured = Cropper(load_ensemble(NETS, kernel=56, device="cpu"), search="coarse-to-fine")
    seen["unmeasured"] = _forward_pixels(unmeasured)
    unmeasured.crop_image(path, [label])
    assert sum(seen["unmeasured"]) == sum(seen["full"])


def test_a_batch_of_images_searches_each_image_around_its_own_candidates(one_thread, tmp_path):
    from PIL import Image

    from fcnx.io.images import ImageItem

    items = discover([_demo()])
    parts = [np.asarray(Image.open(item.path).convert("RGB")) for item in items[:3]]
    height = min(p.shape[0] for p in parts)
    wide = np.concatenate([p[:height] for p in parts], axis=1)
    paths = [tmp_path / "wide.png", tmp_path / "mirrored.png"]
    Image.fromarray(wide).save(paths[0])
    Image.fromarray(np.ascontiguousarray(wide[:, ::-1])).save(paths[1])
    label = items[0].label or ""
    batched = Cropper(load_ensemble(NETS, kernel=56, device="cpu"), search="coarse-to-fine", batch_size=2)
    results = {r.item.path: r.boxes[0] for r in batched.crop_items([ImageItem(p, p.name, label) for p in paths])}
    for path in paths:
        (alone,) = batched.crop_image(path, [label]).boxes
        got = results[path]
        assert (got.level, got.cell, got.window, got.tight) == (alone.level, alone.cell, alone.window, alone.tight)
    assert results[paths[0]].cell != results[paths[1]].cell


def test_unknown_search_is_refused():
    with pytest.raises(UsageError, match="unknown search 'fast'"):
        Cropper(load_ensemble(["tiny_vgg"], kernel=56, device="cpu"), search="fast")
