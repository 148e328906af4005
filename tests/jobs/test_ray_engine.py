"""``--engine ray`` on a local 2-CPU Ray cluster: the same bytes as the local engine, resumable.

The nets are fcnx-tiny's (an installed plugin, so that Ray's worker processes find them too),
with seeded random weights. Torch runs one thread in the test process, as in each CPU actor:
convolutions summed in another order could differ in the last bit.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from fcnx.cli import cli
from fcnx.engine.cropper import Cropper
from fcnx.engine.results import CropFailure
from fcnx.io.discovery import discover
from fcnx.io.review_index import CACHE
from fcnx.testing import random_checkpoint

NETS = ["tiny_vgg", "tiny_resnet"]
CLASSES = ["apple", "bread", "cake", "dumpling"]
KERNEL = 56


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster of 2 CPUs for the module (nothing leaves this machine); skips without Ray."""
    ray = pytest.importorskip("ray", reason="the Ray engine needs pip install 'fcnx[ray]'")
    handler = signal.getsignal(signal.SIGTERM)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()
    signal.signal(signal.SIGTERM, handler)  # ray.init's handler would outlive the cluster (tests of signals follow)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    return {
        n: random_checkpoint(folder / f"{n}.safetensors", n, CLASSES, input_size=KERNEL, seed=k)
        for k, n in enumerate(NETS)
    }


def photos(folder: Path) -> Path:
    """Seven noise images of three sizes in two folders, and a broken file."""
    rng = np.random.default_rng(0)
    sizes = [(60, 80), (64, 64), (90, 70)]
    for k in range(7):
        path = folder / f"part{k % 2}" / f"{k}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (*sizes[k % 3], 3), np.uint8)).save(path)
    (folder / "part0" / "broken.png").write_bytes(b"not a png")
    return folder


def crop(weights: dict[str, Path], *args: object) -> object:
    argv = ["crop", "--nets", ",".join(NETS), "--kernel", str(KERNEL), "--max-scale", "1.5", "--workers", "0"]
    for name, path in weights.items():
        argv += ["--weights", f"{name}={path}"]
    return CliRunner().invoke(cli, argv + [str(a) for a in args], catch_exceptions=False)


def files(out: Path) -> dict[str, bytes]:
    """Every file of OUTDIR but fcnx review's index (it names the run's files by inode and times), by path."""
    return {
        p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file() and p.name != CACHE
    }


@pytest.mark.slow
def test_ray_engine_writes_the_same_bytes_as_the_local_engine_and_resumes(tmp_path, cluster, weights, one_thread):
    source = photos(tmp_path / "photos")
    local = crop(weights, "--heatmaps", source, "-o", tmp_path / "local")
    assert local.exit_code == 1 and "1 image(s) failed" in local.stderr  # the broken file
    out = tmp_path / "ray"
    result = crop(weights, "--heatmaps", "--engine", "ray", "--actors", "2", "--profile", source, "-o", out)
    assert result.exit_code == 1, result.output
    assert "8 image(s) to do" in result.stderr and "in 2 CPU actor(s)" in result.stderr
    assert files(out) == files(tmp_path / "local")  # boxes.jsonl, boxes.csv, crops, heatmaps, failures.txt, settings
    journal = (out / "boxes.jsonl").read_text().splitlines()
    assert len(journal) == 7

    # resumable as the local engine is: only the failure is retried, then the changed file too
    again = crop(weights, "--heatmaps", "--engine", "ray", "--actors", "2", source, "-o", out)
    assert "1 image(s) to do, 7 already done" in again.stderr
    changed = source / "part1" / "3.png"
    os.utime(changed, ns=(time.time_ns(), time.time_ns() + 10**9))
    redo = crop(weights, "--heatmaps", "--engine", "ray", "--actors", "2", source, "-o", out)
    assert "2 image(s) to do, 6 already done" in redo.stderr
    after = (out / "boxes.jsonl").read_text().splitlines()
    assert [line for line in after if str(changed) not in line] == [
        line for line in journal if str(changed) not in line
    ]
    (line,) = [k for k, text in enumerate(after) if str(changed) in text]
    assert str(changed) in journal[line]  # still in input order
    assert f'"source_mtime_ns": {changed.stat().st_mtime_ns}' in after[line]


@pytest.mark.slow
def test_decode_tasks_and_one_actor_give_the_local_results(tmp_path, cluster, weights, one_thread):
    """The GPU layout (decoding in Ray Data tasks, then the actors) run on CPUs: same boxes and heatmaps."""
    from fcnx.engine.options import CropOptions
    from fcnx.jobs.ray import RayStats, crop_on_ray

    items = discover([photos(tmp_path / "photos")])
    fields = {"max_scale": 1.5, "categories": ["cake"], "heatmaps": True, "early_stop": True}
    local = {
        r.item.path: r
        for r in Cropper.from_nets(NETS, weights, kernel=KERNEL, device="cpu", **fields).crop_items(items)
    }
    stats = RayStats()
    options = CropOptions(NETS, {n: str(p) for n, p in weights.items()}, KERNEL, engine="ray", actors=1, profile=True)
    options = dataclasses.replace(options, **fields)
    remote = list(crop_on_ray(options, items, decode_tasks=True, stats=stats))
    assert sorted(str(r.item.path) for r in remote) == sorted(str(i.path) for i in items)
    assert stats.actors == 1 and not stats.gpus and stats.forward_seconds > 0
    for result in remote:
        expected = local[result.item.path]
        assert result.item is next(i for i in items if i.path == result.item.path)  # the driver's own items
        if isinstance(result, CropFailure):
            assert result == expected and "broken.png" in result.error
            continue
        assert (result.size, result.scales, result.boxes) == (expected.size, expected.scales, expected.boxes)
        for box, other in zip(result.boxes, expected.boxes):
            assert np.array_equal(box.heatmap, other.heatmap)


def test_ray_options_are_checked(tmp_path, cluster, weights):
    photos(tmp_path / "photos")
    half = crop(weights, "--engine", "ray", "--half", tmp_path / "photos", "-o", tmp_path / "out")
    assert half.exit_code == 2 and "--half: half precision needs GPU actors" in half.stderr
    local = crop(weights, "--actors", "2", tmp_path / "photos", "-o", tmp_path / "out2")
    assert local.exit_code == 2 and "apply to --engine ray" in local.stderr


def test_without_ray_the_engine_says_how_to_install_it(tmp_path, weights, monkeypatch):
    photos(tmp_path / "photos")
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails
    result = crop(weights, "--engine", "ray", tmp_path / "photos", "-o", tmp_path / "out")
    assert result.exit_code == 2 and "pip install 'fcnx[ray]'" in result.stderr


def labelled(folder: Path) -> Path:
    """A class-folder dataset: two noise images per class, and one unreadable file."""
    rng = np.random.default_rng(1)
    for k, label in enumerate(CLASSES * 2):
        path = folder / label / f"{k}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (60 + 4 * k, 70, 3), np.uint8)).save(path)
    (folder / "cake" / "broken.png").write_bytes(b"not a png")
    return folder


def evaluate(weights: dict[str, Path], *args: object) -> object:
    argv = ["evaluate", "--nets", ",".join(NETS), "--kernel", str(KERNEL), "--split", "all", "--quiet"]
    for name, path in weights.items():
        argv += ["--weights", f"{name}={path}"]
    return CliRunner().invoke(cli, argv + [str(a) for a in args], catch_exceptions=False)


@pytest.mark.slow
def test_evaluate_on_ray_writes_the_local_figures(tmp_path, cluster, weights, one_thread):
    data = labelled(tmp_path / "data")
    for k, mode in enumerate((["--crop"], ["--crops", None])):
        if mode[-1] is None:  # boxes of an earlier crop
            assert crop(weights, "--dry-run", data, "-o", tmp_path / "boxes").exit_code == 1  # the broken file
            mode = ["--crops", tmp_path / "boxes" / "boxes.jsonl"]
        # an OUTDIR per mode: one made with other settings is refused, as crop's is
        local_out, ray_out = tmp_path / f"local-{k}", tmp_path / f"ray-{k}"
        local = evaluate(weights, "--data", data, *mode, "-o", local_out)
        remote = evaluate(weights, "--data", data, *mode, "--engine", "ray", "--actors", "2", "-o", ray_out)
        assert local.exit_code == remote.exit_code == 1, remote.output  # the unreadable image
        assert "1 image(s) skipped" in remote.stderr and remote.stdout == local.stdout
        assert f"error: {data / 'cake' / 'broken.png'}: " in remote.stderr
        for name in ("evaluation.json", "evaluation.csv"):
            assert (ray_out / name).read_bytes() == (local_out / name).read_bytes()
    assert "cropped top-1" in remote.stdout


def _actor_processes() -> list[int]:
    """The processes of this machine running a crop actor (Ray titles them ``ray::...CropActor...``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"CropActor" in command:
                found.append(int(entry.name))
    return found


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")
def test_a_crop_actor_killed_mid_run_leaves_every_image_once(tmp_path, cluster, weights, one_thread):
    """``kill -9`` of one of the two actors' processes mid-run: Ray restarts it and runs its batch again;
    the run completes with every image exactly once in the journal, as a run never killed."""
    import signal
    import threading

    rng = np.random.default_rng(2)
    source = tmp_path / "photos"
    for k in range(24):
        path = source / f"{k:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (60 + k % 3 * 8, 70, 3), np.uint8)).save(path)
    out = tmp_path / "out"
    killed: list[tuple[int, int]] = []  # (journal lines, pid) at the kill

    def kill_one() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            lines = (out / "boxes.jsonl").read_bytes().count(b"\n") if (out / "boxes.jsonl").exists() else 0
            actors = _actor_processes()
            if lines >= 4 and actors:
                os.kill(actors[0], signal.SIGKILL)
                killed.append((lines, actors[0]))
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=kill_one, daemon=True)
    watcher.start()
    result = crop(weights, "--engine", "ray", "--actors", "2", "--category", "cake", "--dry-run", source, "-o", out)
    watcher.join()
    assert result.exit_code == 0, result.output
    assert killed and killed[0][0] < 24, "the actor was not killed mid-run"
    paths = [line.split('"path": ')[1].split(",")[0] for line in (out / "boxes.jsonl").read_text().splitlines()]
    assert len(paths) == len(set(paths)) == 24
    local = crop(weights, "--category", "cake", "--dry-run", source, "-o", tmp_path / "local")
    assert (
        local.exit_code == 0 and (out / "boxes.jsonl").read_bytes() == (tmp_path / "local" / "boxes.jsonl").read_bytes()
    )
