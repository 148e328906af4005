"""``fcnx evaluate -o`` and ``fcnx suspects`` resume after a crash as ``fcnx crop`` does (issue 31, item 3):
killed with ``kill -9`` mid-run, the rerun does only the rest, and its outputs are byte for byte those
of a run never killed. Real subprocesses, tiny colour nets, a Food-101-style dataset."""

from __future__ import annotations

import json
import signal

import pytest
from process_helpers import lines, run, start, wait_until
from tiny_backbones import color_checkpoint
from tiny_train_backbone import make_food101

NETS = ["tiny0", "tiny43"]
IMAGES = 36
#: per command: its journal and the outputs compared
OUTPUTS = {
    "evaluate": ("evaluation.jsonl", ["evaluation.csv", "evaluation.json"], ["--batch-size", "3"]),
    "suspects": ("suspects.jsonl", ["suspects.csv", "suspects.json", "suspects.html", "label_issues.csv"], []),
}


@pytest.fixture
def setup(tmp_path, tiny_registry):
    weights = {n: color_checkpoint(tmp_path / "weights" / f"{n}.safetensors", n) for n in NETS}
    nets = ["--nets", ",".join(NETS), *[a for n, p in weights.items() for a in ("--weights", f"{n}={p}")]]
    data = make_food101(tmp_path / "food", train=1, test=IMAGES // 3)
    return nets, data


@pytest.mark.slow
@pytest.mark.parametrize("command", ["evaluate", "suspects"])
def test_a_killed_run_resumes_with_only_the_rest_and_the_same_outputs(tmp_path, setup, command):
    nets, data = setup
    journal, outputs, extra = OUTPUTS[command]
    args = [command, *nets, "--data", data, "--split", "test", *extra]
    whole = run(*args, "-o", tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr
    out = tmp_path / "killed"
    process = start(*args, "-o", out)
    wait_until(process, lambda: lines(out / journal) >= 6, "6 journal lines")
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = lines(out / journal)
    assert 6 <= done < IMAGES and not (out / outputs[0]).exists()
    resumed = run(*args, "-o", out)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{command}: {IMAGES - done} image(s) to do, {done} already done" in resumed.stderr
    for name in outputs:
        assert (out / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
    records = [json.loads(line) for line in (out / journal).read_text().splitlines()]
    assert len({r["path"] for r in records}) == len(records) == IMAGES
    again = run(*args, "-o", out)  # all done: nothing scored again, the same outputs
    assert again.returncode == 0 and f"0 image(s) to do, {IMAGES} already done" in again.stderr
    changed = run(*[a if a != "test" else "train" for a in args], "-o", out)
    assert changed.returncode == 2
    assert f"{out} holds results made with other settings (split: 'test' there, 'train' now)" in changed.stderr
