"""Every command stops cleanly on Ctrl-C and SIGTERM (issue 31, item 2): one line saying how to go on,
exit status 130 or 143, no temporary left, and a second signal never cuts a file short.

Real signals throughout: to a subprocess once its command runs (its SIGTERM handler is installed,
read from /proc), or sent by the process to itself at a chosen point of the command.
"""

from __future__ import annotations

import csv
import json
import os
import signal

import pytest
from click.testing import CliRunner
from image_corpus import square
from process_helpers import catches, lines, start, wait_until
from tiny_backbones import color_checkpoint
from tiny_train_backbone import NAME, make_food101

from fcnx.cli import cli
from fcnx.jobs.outdir import outputs, reports

NETS = ["tiny0", "tiny43"]
EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}
HOW = {signal.SIGINT: "interrupted", signal.SIGTERM: "stopped by SIGTERM"}


@pytest.fixture
def nets(tmp_path, tiny_registry):
    weights = {n: color_checkpoint(tmp_path / "weights" / f"{n}.safetensors", n) for n in NETS}
    return ["--nets", ",".join(NETS), *[a for n, p in weights.items() for a in ("--weights", f"{n}={p}")]]


def _stop(process, signum: int) -> str:
    """Send ``signum`` to ``process`` once its command runs; its stderr when it has ended."""
    wait_until(process, lambda: catches(process.pid, signal.SIGTERM), "the command started")
    process.send_signal(signum)
    return process.communicate(timeout=300)[1].decode()


def _no_temporaries(folder) -> None:
    assert not [p for p in folder.rglob("*") if p.name.endswith(".fcnx-tmp")]


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_train_stops_and_says_how_to_continue(tmp_path, signum):
    food, out = make_food101(tmp_path / "food", train=12, test=2), tmp_path / "run"
    args = ["train", "--net", NAME, "--data", food, "-o", out, "--size", "64", "--weights", "none"]
    process = start(*args, "--epochs", "60", "--patience", "60", "--workers", "0", "--batch-size", "4", "-q")
    wait_until(process, lambda: (out / "resume.safetensors").exists(), "the first checkpoint")
    stderr = _stop(process, signum)
    assert process.returncode == EXIT[signum], stderr
    assert "Traceback" not in stderr
    assert stderr.splitlines()[-1] == f"train: {HOW[signum]}; continue with: fcnx train --resume -o {out}"
    _no_temporaries(out)


@pytest.mark.slow
@pytest.mark.parametrize("command", ["evaluate", "suspects"])
def test_evaluate_and_suspects_stop_on_sigterm_with_one_line(tmp_path, nets, command):
    data = make_food101(tmp_path / "food", train=1, test=40)
    out = tmp_path / "out"
    process = start(command, *nets, "--data", data, "--split", "test", "-o", out)
    stderr = _stop(process, signal.SIGTERM)
    assert process.returncode == 143, stderr
    assert "Traceback" not in stderr
    assert [line for line in stderr.splitlines() if "SIGTERM" in line] == [
        f"{command}: stopped by SIGTERM; run the same command again to resume"
    ]
    _no_temporaries(out)


def _signal_self(signum: int):
    def send(*args, **kwargs):
        os.kill(os.getpid(), signum)
        raise AssertionError("the signal did not stop the command")

    return send


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_export_and_bench_stop_with_one_line(tmp_path, monkeypatch, signum):
    from fcnx.bench import fashion
    from fcnx.jobs import export

    monkeypatch.setattr(export, "export", _signal_self(signum))
    monkeypatch.setattr(fashion, "generate", _signal_self(signum))
    (tmp_path / "crop").mkdir()
    for args in (
        ["export", tmp_path / "crop", "--format", "coco", "-o", tmp_path / "e"],
        ["bench", "data", "-o", tmp_path / "b"],
    ):
        result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
        name = " ".join(map(str, args[:2])) if args[0] == "bench" else "export"
        assert result.exit_code == EXIT[signum], result.output
        assert result.stderr.splitlines() == [f"{name}: {HOW[signum]}; run the same command again"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers are restored afterwards


def test_a_second_signal_while_crop_writes_its_tables_is_ignored(tmp_path, nets, monkeypatch):
    photos, out = tmp_path / "photos", tmp_path / "out"
    for k in range(6):
        square(photos / f"{k}.png", top=10 + k, left=20 + k)
    submit, write_csv = outputs.CropOutputs.submit, reports.write_csv
    seen = []

    def first(self, result):  # SIGTERM as the third image is handed over for writing
        seen.append(result)
        if len(seen) == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return submit(self, result)

    def second(path, columns, rows):  # and again while boxes.csv is being written
        rows = list(rows)
        os.kill(os.getpid(), signal.SIGTERM)
        return write_csv(path, columns, rows)

    monkeypatch.setattr(outputs.CropOutputs, "submit", first)
    monkeypatch.setattr(reports, "write_csv", second)
    argv = ["crop", *nets, "--category", "red", "--workers", "0", "--batch-size", "1", str(photos), "-o", str(out)]
    result = CliRunner().invoke(cli, argv, catch_exceptions=False)
    assert result.exit_code == 143, result.output
    assert result.stderr.splitlines()[-1] == "crop: stopped by SIGTERM; run the same command again to resume"
    records = lines(out / "boxes.jsonl")
    with open(out / "boxes.csv", newline="", encoding="utf-8") as f:
        assert len(list(csv.DictReader(f))) == records >= 2
    assert [json.loads(line)["path"] for line in (out / "boxes.jsonl").read_text().splitlines()]
    _no_temporaries(out)


def test_evaluate_without_an_outdir_says_nothing_is_kept(tmp_path, nets, monkeypatch):
    from fcnx.jobs import scoring

    monkeypatch.setattr(scoring, "score_items", _signal_self(signal.SIGINT))
    data = make_food101(tmp_path / "food", train=1, test=1)
    result = CliRunner().invoke(
        cli, ["evaluate", *nets, "--data", str(data), "--split", "test"], catch_exceptions=False
    )
    assert result.exit_code == 130
    assert (
        result.stderr.splitlines()[-1]
        == "evaluate: interrupted; nothing is kept without -o; run the same command again"
    )
