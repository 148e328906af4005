"""``--jobs``: worker processes write the bytes of one process, resume after a kill, die with their parent;
``--backend auto``: the CPU runtime chosen, said, recorded, and torch's boxes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image, ImageOps

from fcnx.cli import cli
from fcnx.engine import backends
from fcnx.io.review_index import CACHE
from fcnx.jobs import workers

NETS = "tiny_vgg,tiny_resnet,tiny_inception"


def _demo() -> Path:
    import fcnx_tiny

    return Path(fcnx_tiny.__file__).parent / "demo"


def _tree(out: Path) -> dict[str, bytes]:
    """Every file of OUTDIR but its lock and fcnx review's index (it names the run's files by inode and times), by
    path."""
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name not in (".fcnx-lock", CACHE)
    }


def _crop(*args: str) -> object:
    return CliRunner().invoke(cli, ["crop", "--nets", NETS, "--device", "cpu", *map(str, args)], catch_exceptions=False)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> dict[str, bytes]:
    """The demo canvases cropped by one process (torch), with heatmaps and the gallery."""
    out = tmp_path_factory.mktemp("jobs1") / "out"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FCNX_BACKEND", "torch")
        result = _crop(_demo(), "-o", out, "--jobs", "1", "--heatmaps", "--gallery", "--workers", "0")
    assert result.exit_code == 0, result.output
    assert "processes" not in result.output
    return _tree(out)


def test_two_worker_processes_write_the_bytes_of_one(tmp_path, one_process):
    out = tmp_path / "out"
    result = _crop(_demo(), "-o", out, "--jobs", "2", "--heatmaps", "--gallery")
    assert result.exit_code == 0, result.output
    assert "on cpu with torch, 2 processes x 1 thread" in result.output
    got = _tree(out)
    assert sorted(got) == sorted(one_process)
    assert [name for name in got if got[name] != one_process[name]] == []
    assert len(json.loads(got[".fcnx-crop.json"])["files"]) > 3 and got["boxes.jsonl"].count(b"\n") == 10


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG and /proc are Linux's")
def test_a_killed_run_with_two_workers_resumes_and_its_workers_die_with_it(tmp_path, one_process, monkeypatch):
    monkeypatch.delenv("FCNX_BACKEND")  # auto: ONNX Runtime in the workers
    photos = tmp_path / "photos"
    sources = sorted(p for p in (_demo() / "images").rglob("*.png"))
    for k in range(3):  # 30 canvases: the originals, mirrored, flipped
        for path in sources:
            target = photos / f"{k}" / path.parent.name / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            image = Image.open(path)
            (image if k == 0 else ImageOps.mirror(image) if k == 1 else ImageOps.flip(image)).save(target)
    out = tmp_path / "out"
    args = ["crop", "--nets", NETS, "--device", "cpu", "--jobs", "2", "--category", "bag", str(photos), "-o", str(out)]
    command = [sys.executable, "-m", "fcnx", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    lines, children = 0, []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        children = children or _children(process.pid)
        journal = out / "boxes.jsonl"
        lines = journal.read_bytes().count(b"\n") if journal.exists() else 0
        if lines >= 2:
            children = _children(process.pid)
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()
    assert 2 <= lines < 30 and len(children) >= 2  # the two workers (and multiprocessing's resource tracker)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in children):
        time.sleep(0.1)
    alive = [pid for pid in children if Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid)]
    assert alive == [], "workers outlived their parent"
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert "already done" in resumed.stderr and "with onnxruntime, 2 processes x 1 thread" in resumed.stderr
    records = [json.loads(line) for line in (out / "boxes.jsonl").read_text().splitlines()]
    assert len(records) == 30 and len({r["path"] for r in records}) == 30
    assert [r["path"] for r in records] == sorted(r["path"] for r in records)  # input order at the end
    assert not list(out.rglob("*.fcnx-tmp"))


def _state(pid: int) -> str:
    try:
        return next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("State"))
    except (OSError, StopIteration):
        return "zombie"


def test_jobs_auto_is_one_single_thread_worker_per_core_as_memory_allows(monkeypatch):
    monkeypatch.setattr(workers, "cpu_count", lambda: 4)
    monkeypatch.setattr(workers, "available_memory", lambda: 64 << 30)
    assert workers.plan(None, "cpu", 100) == workers.Plan(4, ("cpu",) * 4, 1)
    assert workers.plan(2, "cpu", 100) == workers.Plan(2, ("cpu",) * 2, 2)
    assert workers.plan(None, "cpu", 3).jobs == 3  # never more workers than images
    assert workers.plan(None, "cpu", 1).jobs == 1
    monkeypatch.setattr(workers, "available_memory", lambda: 7 << 30)
    assert workers.plan(None, "cpu", 100).jobs == 2  # 3 GiB a worker
    assert workers.plan(None, "mps", 100).jobs == 1


def test_auto_backend_is_the_fastest_installed_cpu_runtime_and_torch_elsewhere(monkeypatch):
    assert backends.resolve("auto", "cuda") == backends.resolve("auto", "mps") == "torch"
    assert backends.resolve("auto", "cpu", exportable=False) == "torch"
    assert backends.resolve("openvino", "cpu") == "openvino"
    present = {"onnxruntime", "openvino"}
    monkeypatch.setattr(backends, "installed", lambda b: b == "torch" or b in present)
    assert backends.resolve("auto", "cpu") == "onnxruntime"
    present.discard("onnxruntime")
    assert backends.resolve("auto", "cpu") == "openvino"
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
    assert backends.resolve("auto", "cpu") == "torch"  # OpenVINO aborts under jemalloc
    present.clear()
    monkeypatch.delenv("LD_PRELOAD")
    assert backends.resolve("auto", "cpu") == "torch"


def test_auto_is_said_recorded_and_resumes_an_outdir_of_torch_with_its_bytes(tmp_path, monkeypatch, one_process):
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("FCNX_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    first = _crop(_demo(), "-o", out, "--heatmaps", "--gallery", "--workers", "0", "--jobs", "1", "-q")
    assert first.exit_code == 0, first.output
    assert json.loads((out / ".fcnx-crop.json").read_text())["settings"]["backend"] == "torch"
    lines = (out / "boxes.jsonl").read_bytes().splitlines(True)
    for record in map(json.loads, lines[7:]):  # a run stopped before its last 3 images
        (out / record["crop"]).unlink()
        (out / record["heatmap"]).unlink()
    (out / "boxes.jsonl").write_bytes(b"".join(lines[:7]))
    monkeypatch.delenv("FCNX_BACKEND")
    resumed = _crop(_demo(), "-o", out, "--heatmaps", "--gallery", "--workers", "0", "--jobs", "1")
    assert resumed.exit_code == 0, resumed.output
    assert (
        "3 image(s) to do, 7 already done; nets tiny_vgg, tiny_resnet, tiny_inception at kernel 56 on cpu "
        in (resumed.output)
        and "with onnxruntime" in resumed.output
    )
    settings = json.loads((out / ".fcnx-crop.json").read_text())["settings"]
    assert settings["backend"] == "onnxruntime"
    want = json.loads(one_process[".fcnx-crop.json"])["settings"]
    assert {k: v for k, v in settings.items() if k != "backend"} == {k: v for k, v in want.items() if k != "backend"}
    got = _tree(out)
    assert sorted(got) == sorted(one_process)
    # the same boxes, crops and heatmaps; confidences to float rounding (the runtime adds in another order)
    assert [n for n in got if got[n] != one_process[n]] == [".fcnx-crop.json", "boxes.csv", "boxes.jsonl"]
    records, reference = (list(map(json.loads, t["boxes.jsonl"].splitlines())) for t in (got, one_process))
    for record, want in zip(records, reference, strict=True):
        assert _boxes(record) == _boxes(want)
        assert abs(record["mean_confidence"] - want["mean_confidence"]) < 1e-5
        assert record["guesses"][0][0] == want["guesses"][0][0]  # the whole image's top class, its probabilities:
        assert sorted(p for _, p, _ in record["guesses"]) == pytest.approx(
            sorted(p for _, p, _ in want["guesses"]), abs=1e-5
        )


def _boxes(record: dict) -> dict:
    """A record without its confidences (nor the whole image's guesses, probabilities too)."""
    return {k: v for k, v in record.items() if "confidence" not in k and k not in ("net_scores", "guesses")}


# --------------------------------------------------------------------------- evaluate and suspects (--jobs)

#: per command: its options, and the outputs compared (the journal too: put in input order at the end)
SCORING = {
    "evaluate": (["--crop"], ["evaluation.csv", "evaluation.json", "evaluation.jsonl"]),
    "suspects": (
        ["--signal", "graded"],
        ["suspects.csv", "suspects.json", "suspects.html", "label_issues.csv", "suspects.jsonl"],
    ),
}


def _score(command: str, data: Path, out: Path, *args: str) -> object:
    extra = SCORING[command][0]
    return CliRunner().invoke(
        cli,
        [
            command,
            "--nets",
            NETS,
            "--device",
            "cpu",
            "--data",
            str(data),
            "--split",
            "all",
            *extra,
            "-o",
            str(out),
            *args,
        ],
        catch_exceptions=False,
    )


@pytest.mark.parametrize("command", ["evaluate", "suspects"])
def test_evaluate_and_suspects_in_two_worker_processes_write_the_bytes_of_one(tmp_path, command):
    one = _score(command, _demo(), tmp_path / "one", "--jobs", "1")
    assert one.exit_code == 0, one.output
    two = _score(command, _demo(), tmp_path / "two", "--jobs", "2")
    assert two.exit_code == 0, two.output
    assert f"{command}: 2 processes x 1 thread" in two.output and "processes" not in one.output
    for name in SCORING[command][1]:
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name
    journal = [json.loads(line)["path"] for line in (tmp_path / "two" / SCORING[command][1][-1]).open()]
    assert len(set(journal)) == len(journal) == 10


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")
def test_suspects_killed_with_two_workers_resumes_with_only_the_rest_and_the_same_outputs(tmp_path):
    data = tmp_path / "data"
    for k in range(3):  # 30 labelled canvases in class folders: the originals, mirrored, flipped
        for path in sorted((_demo() / "images").rglob("*.png")):
            target = data / path.parent.name / f"{k}-{path.name}"
            target.parent.mkdir(parents=True, exist_ok=True)
            image = Image.open(path)
            (image if k == 0 else ImageOps.mirror(image) if k == 1 else ImageOps.flip(image)).save(target)
    extra, outputs = SCORING["suspects"]
    args = ["suspects", "--nets", NETS, "--device", "cpu", "--data", str(data), *extra]
    whole = _score("suspects", data, tmp_path / "whole", "--jobs", "1")
    assert whole.exit_code == 0, whole.output
    out = tmp_path / "out"
    command = [sys.executable, "-m", "fcnx", *args, "-o", str(out), "--jobs", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    journal = out / "suspects.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if journal.exists() and journal.read_bytes().count(b"\n") >= 3:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()
    done = journal.read_bytes().count(b"\n")
    assert 3 <= done < 30 and not (out / "suspects.csv").exists()
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert f"suspects: {30 - done} image(s) to do, {done} already done" in resumed.stderr
    for name in outputs:
        assert (out / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
