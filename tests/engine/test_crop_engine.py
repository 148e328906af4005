"""The ensemble and the crop engine on tiny backbones: alignment, exact choices, batching, failures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_backbones import COLOR_CLASSES, color_checkpoint, random_tiny_checkpoint

from fcnx.engine.cropper import Cropper
from fcnx.engine.ensemble import Ensemble, load_ensemble, resize
from fcnx.engine.fcn import load_fcn
from fcnx.engine.results import CropFailure, CropResult
from fcnx.errors import FcnxError, UsageError
from fcnx.io.discovery import ImageItem, discover
from fcnx.method import geometry
from fcnx.method.selection import Level, select

KERNEL = 299
CLASSES = ["apple", "bread", "cake", "dumpling", "egg"]
VALID_NETS = ["tiny0", "tiny43", "tiny11"]  # formulas 32D, 32D+43, 32D+11: pools 9, 8, 9 at 299


@pytest.fixture
def random_nets(tmp_path, tiny_registry):
    return {
        name: random_tiny_checkpoint(tmp_path / f"{name}.safetensors", name, CLASSES, seed=seed)
        for seed, name in enumerate(VALID_NETS)
    }


@pytest.fixture
def color_nets(tmp_path, tiny_registry):
    return {
        name: color_checkpoint(tmp_path / f"{name}_color.safetensors", name) for name in ["tiny0", "tiny43", "tiny_m25"]
    }


def noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Blocks of random colours (4 x 5 of them): windows at neighbouring cells see different content."""
    blocks = np.random.default_rng(seed).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    return np.array(Image.fromarray(blocks).resize((width, height), Image.Resampling.NEAREST))


def red_square(height: int = 400, width: int = 600, top: int = 250, left: int = 400, side: int = 100) -> np.ndarray:
    image = np.full((height, width, 3), 128, np.uint8)
    image[top : top + side, left : left + side] = (230, 20, 20)
    return image


def to_batch(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pixels).permute(2, 0, 1)[None]


def window_probabilities(fcn, scaled: torch.Tensor, cell: tuple[int, int]) -> torch.Tensor:
    """The plain classifier on the window of ``cell``: softmax over classes."""
    i, j = cell
    window = scaled[:, :, 32 * i : 32 * i + KERNEL, 32 * j : 32 * j + KERNEL]
    assert window.shape[-2:] == (KERNEL, KERNEL)
    with torch.inference_mode():
        return fcn.classifier(fcn.normalize(window)).softmax(dim=1)[0]


def test_cell_ij_of_every_net_is_the_classifier_on_the_same_window(random_nets):
    ensemble = load_ensemble(VALID_NETS, random_nets, kernel=KERNEL, device="cpu")
    assert [f.pool for f in ensemble.fcns] == [9, 8, 9]
    pixels = to_batch(noise(150, 200))
    for size in [(330, 363), (431, 575)]:
        scaled = resize(pixels, size)
        probs = ensemble.probabilities(scaled)
        rows, cols = geometry.common_cells(size[0], KERNEL, 32), geometry.common_cells(size[1], KERNEL, 32)
        assert probs.shape == (1, 3, len(CLASSES), rows, cols)
        raw = [tuple(f(scaled).shape[-2:]) for f in ensemble.fcns]
        if size == (330, 363):  # 32D has an extra row there (a 288-wide window still fits): cropped away
            assert raw == [(2, 3), (1, 3), (1, 3)] and (rows, cols) == (1, 3)
        shifted = 0.0  # how far off a heatmap misaligned by one cell would be
        for n, fcn in enumerate(ensemble.fcns):
            for i in range(rows):
                for j in range(cols):
                    expected = window_probabilities(fcn, scaled, (i, j))
                    assert torch.allclose(probs[0, n, :, i, j], expected, atol=1e-5), (fcn.name, size, (i, j))
                    if j + 1 < cols:
                        shifted = max(shifted, (probs[0, n, :, i, j + 1] - expected).abs().max().item())
        assert shifted > 1e-3 or cols == 1  # the comparison would catch a one-cell misalignment


def test_engine_choice_equals_sliding_the_classifiers_over_every_window(random_nets):
    names = VALID_NETS
    cropper = Cropper.from_nets(
        names, random_nets, kernel=KERNEL, device="cpu", max_scale=1.5, categories=["cake"], box="square"
    )
    image = noise(150, 200, seed=3)
    result = cropper.crop_image(image)
    (box,) = result.boxes
    scales = geometry.pyramid_scales(150, 200, KERNEL, 1.2, 1.5)
    assert result.scales == tuple(scales) and len(scales) == 3
    levels = []
    for scale in scales:
        size = geometry.scaled_size(150, 200, scale, KERNEL)
        scaled = resize(to_batch(image), size)
        rows, cols = (geometry.common_cells(s, KERNEL, 32) for s in size)
        probs = np.zeros((len(names), len(CLASSES), rows, cols))
        for n, fcn in enumerate(cropper.ensemble.fcns):
            for i in range(rows):
                for j in range(cols):
                    probs[n, :, i, j] = window_probabilities(fcn, scaled, (i, j)).numpy()
        levels.append(Level(prob=probs[:, 2], vote=probs.argmax(axis=1) == 2))
    expected = select(levels)
    assert (box.level, box.cell, box.votes) == (expected.level, expected.cell, expected.votes)
    assert box.confidence == pytest.approx(expected.confidence, abs=1e-5)
    # the box, from the paper's formulas with the exact per-axis scale
    height, width = geometry.scaled_size(150, 200, scales[box.level], KERNEL)
    i, j = box.cell
    assert (box.scaled_size, box.category, box.category_index) == ((height, width), "cake", 2)
    assert box.x == pytest.approx(32 * j * 200 / width) and box.y == pytest.approx(32 * i * 150 / height)
    assert box.x2 == pytest.approx(min(200, (32 * j + KERNEL) * 200 / width))
    assert box.y2 == pytest.approx(min(150, (32 * i + KERNEL) * 150 / height))


def test_a_red_square_is_found_where_it_is(color_nets):
    cropper = Cropper.from_nets(list(color_nets), color_nets, device="cpu", heatmaps=True)
    result = cropper.crop_image(red_square(), categories=["red", "green"])
    red, green = result.boxes
    assert (red.category, red.found, red.votes, red.nets) == ("red", True, 3, 3)
    assert red.x1 <= 400 and red.y1 <= 250 and red.x2 >= 500 and red.y2 >= 350  # covers the square
    assert red.w < 200 and red.h < 200  # and is tight: the smallest windows win
    assert red.heatmap is not None
    assert red.heatmap.shape == tuple(geometry.common_cells(side, KERNEL, 32) for side in red.scaled_size)
    assert set(red.net_scores) == {"tiny0", "tiny43", "tiny_m25"} and all(red.net_votes.values())
    assert (green.found, green.votes) == (False, 0)  # nobody sees green: flagged, still a box
    # no category: the ensemble's top class at its most confident cell
    (top,) = cropper.crop_image(red_square()).boxes
    assert (top.category, top.cell, top.level) == ("red", red.cell, red.level)


def test_early_stop_ends_the_pyramid_at_the_first_unanimous_level(color_nets):
    full = Cropper.from_nets(list(color_nets), color_nets, device="cpu", selection="votes-first")
    early = Cropper(full.ensemble, selection="votes-first", early_stop=True)
    image = red_square(300, 300, 40, 40, 200)
    (a,), (b,) = full.crop_image(image, ["red"]).boxes, early.crop_image(image, ["red"]).boxes
    assert a.levels_examined == 7 and not a.stopped_early
    assert b.stopped_early and b.levels_examined == b.level + 1 < 7 and b.votes == 3


def test_batched_results_equal_one_image_at_a_time(tmp_path, random_nets):
    cropper = Cropper.from_nets(VALID_NETS, random_nets, device="cpu", max_scale=1.5, batch_size=3)
    paths = []
    for k in range(5):
        paths.append(tmp_path / f"img{k}.png")
        Image.fromarray(noise(150 if k != 2 else 170, 200, seed=k)).save(paths[-1])
    (tmp_path / "broken.png").write_bytes(b"\x89PNG but not really")
    items = discover(sorted(tmp_path.glob("*.png")))
    outcomes = list(cropper.crop_items(items))
    failures = [o for o in outcomes if isinstance(o, CropFailure)]
    results = {o.item.path: o for o in outcomes if isinstance(o, CropResult)}
    assert [f.item.path.name for f in failures] == ["broken.png"]
    assert failures[0].error.startswith(f"{tmp_path / 'broken.png'}: ")
    assert sorted(results) == sorted(paths)
    for path in paths:
        alone = cropper.crop_image(path)
        got = results[path]
        assert got.size == alone.size and len(got.boxes) == 1
        a, b = got.boxes[0], alone.boxes[0]
        assert (a.category, a.level, a.cell, a.votes) == (b.category, b.level, b.cell, b.votes)
        assert a.confidence == pytest.approx(b.confidence, abs=1e-5)


def test_worker_processes_give_the_same_results(tmp_path, color_nets):
    for k in range(3):
        Image.fromarray(red_square(top=50 * k + 20)).save(tmp_path / f"sq{k}.png")
    items = discover([tmp_path])
    inline = Cropper.from_nets(list(color_nets), color_nets, device="cpu", categories=["red"], workers=0, max_scale=1.5)
    forked = Cropper(inline.ensemble, categories=["red"], workers=2, batch_size=2, max_scale=1.5)
    a = {r.item.path: r.boxes[0] for r in inline.crop_items(items)}
    b = {r.item.path: r.boxes[0] for r in forked.crop_items(items)}
    assert a.keys() == b.keys() and all((a[p].cell, a[p].level) == (b[p].cell, b[p].level) for p in a)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_rotated_photos_get_boxes_in_upright_coordinates(tmp_path, color_nets, orientation):
    from image_corpus import STORED

    cropper = Cropper.from_nets(list(color_nets), color_nets, device="cpu", categories=["red"], max_scale=1.5)
    upright = red_square(200, 300, 20, 30, 60)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(np.ascontiguousarray(STORED[orientation](upright))).save(tmp_path / "turned.png", exif=exif)
    (turned,), (plain,) = cropper.crop_image(tmp_path / "turned.png").boxes, cropper.crop_image(upright).boxes
    assert cropper.crop_image(tmp_path / "turned.png").size == (200, 300)
    assert (turned.x, turned.y, turned.w, turned.h) == (plain.x, plain.y, plain.w, plain.h)
    assert turned.x1 <= 30 and turned.y1 <= 20 and turned.x2 >= 90 and turned.y2 >= 80


def test_tiny_images_are_upscaled_and_elongated_ones_fail_cleanly(tmp_path, color_nets):
    cropper = Cropper.from_nets(list(color_nets), color_nets, device="cpu", categories=["red"])
    (box,) = cropper.crop_image(np.array([[[255, 0, 0]]], np.uint8)).boxes
    assert 0 <= box.x < box.x2 <= 1 and 0 <= box.y < box.y2 <= 1 and box.found
    assert geometry.pixel_box((box.x, box.y, box.w, box.h), (1, 1)) == (0, 0, 1, 1)
    Image.new("RGB", (20000, 10)).save(tmp_path / "strip.png")
    with pytest.raises(FcnxError, match=r"strip\.png: image of 20000x10 is too elongated"):
        cropper.crop_image(tmp_path / "strip.png")
    (outcome,) = cropper.crop_items([ImageItem(tmp_path / "strip.png", Path("strip.png"))])
    assert isinstance(outcome, CropFailure) and "too elongated" in outcome.error


def test_categories_by_name_or_index_and_unknown_ones(color_nets):
    cropper = Cropper.from_nets(list(color_nets), color_nets, device="cpu")
    assert [cropper.category_index(c) for c in ("red", "2", 3)] == [0, 2, 3]
    with pytest.raises(UsageError, match=r"unknown category 'rde' \(did you mean: red\?\)"):
        cropper.category_index("rde")
    with pytest.raises(UsageError, match="index 4 is out of range"):
        cropper.category_index("4")
    with pytest.raises(UsageError, match="given twice"):
        Cropper(cropper.ensemble, categories=["red", "0"])


def test_nets_must_share_classes(tmp_path, tiny_registry):
    a = load_fcn("tiny0", color_checkpoint(tmp_path / "a.safetensors", "tiny0"), kernel=KERNEL)
    reordered = list(reversed(COLOR_CLASSES))
    b = load_fcn("tiny43", color_checkpoint(tmp_path / "b.safetensors", "tiny43", classes=reordered), kernel=KERNEL)
    other = load_fcn(
        "tiny43", color_checkpoint(tmp_path / "c.safetensors", "tiny43", classes=["x", "y", "z", "w"]), kernel=KERNEL
    )
    with pytest.raises(UsageError, match="class lists differ"):
        Ensemble([a, other])
    mixed = Ensemble([a, load_fcn("tiny43", color_checkpoint(tmp_path / "d.safetensors", "tiny43"), kernel=331)])
    with pytest.raises(UsageError, match="differ in kernel or stride: each needs its own input"):
        mixed.probabilities(resize(to_batch(red_square()), (299, 448)))
    # same classes in another order: aligned by name
    ensemble = Ensemble([a, b])
    pixels = resize(to_batch(red_square()), (299, 448))
    probs = ensemble.probabilities(pixels)
    with torch.inference_mode():
        own = b(pixels)[:, :, :1, :5].softmax(dim=1)
    assert ensemble.classes == COLOR_CLASSES
    assert torch.allclose(probs[0, 1], own[0].flip(0), atol=1e-6)
    with pytest.raises(UsageError, match="needs a CUDA or MPS device"):
        Ensemble([a], half=True)
    with pytest.raises(UsageError, match="weights given for tiny11, which is not among the nets"):
        load_ensemble(["tiny0"], {"tiny11": "x.safetensors"}, device="cpu")


@pytest.mark.slow
def test_compiled_nets_choose_the_same_boxes(tmp_path, random_nets):
    """``--compile``: torch.compile with dynamic shapes, one compilation for every level and image size."""
    for k, (height, width) in enumerate([(330, 420), (360, 300)]):
        Image.fromarray(noise(height, width, seed=k)).save(tmp_path / f"{k}.png")
    items = discover([tmp_path / "0.png", tmp_path / "1.png"])
    weights = {"tiny0": random_nets["tiny0"]}
    plain = Cropper.from_nets(["tiny0"], weights, device="cpu", max_scale=1.5)
    compiled = Cropper.from_nets(["tiny0"], weights, device="cpu", max_scale=1.5, compile=True)
    assert compiled.ensemble.compiled and not plain.ensemble.compiled
    for a, b in zip(plain.crop_items(items), compiled.crop_items(items)):
        assert len(a.scales) > 1
        (box_a,), (box_b,) = a.boxes, b.boxes
        assert (box_a.category, box_a.level, box_a.cell, box_a.x, box_a.y, box_a.w, box_a.h) == (
            box_b.category,
            box_b.level,
            box_b.cell,
            box_b.x,
            box_b.y,
            box_b.w,
            box_b.h,
        )
        assert box_b.confidence == pytest.approx(box_a.confidence, rel=1e-5)


@pytest.mark.parametrize("box", ["square", "object"])
def test_guesses_are_the_ensembles_top_classes_of_the_whole_image(random_nets, box):
    cropper = Cropper.from_nets(VALID_NETS, random_nets, kernel=KERNEL, device="cpu", max_scale=1.2, box=box)
    image = noise(150, 200, seed=5)
    result = cropper.crop_image(image, ["cake"])
    whole = resize(to_batch(image), (KERNEL, KERNEL))
    per_net = torch.stack([window_probabilities(fcn, whole, (0, 0)) for fcn in cropper.ensemble.fcns])
    mean = per_net.mean(dim=0)
    order = mean.argsort(descending=True).tolist()
    votes = [int((per_net.argmax(dim=1) == c).sum()) for c in order]
    assert [(c, v) for c, _, v in result.guesses] == [(CLASSES[c], v) for c, v in zip(order, votes)]
    assert [p for _, p, _ in result.guesses] == pytest.approx(mean[order].tolist(), abs=1e-5)
    assert sum(votes) == 3 and len(result.guesses) == len(CLASSES)  # five classes: all of them
