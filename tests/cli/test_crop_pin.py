"""The byte-identity pin: ``fcnx crop`` on fcnx-tiny's ten demo canvases with its three trained nets
(torch, one process: the reference) and ``fcnx export`` of that run write exactly the bytes of
``tests/data/crop_pin/``, generated from main before the architecture refactors. A refactor that
changes a box, a number's last digit, a column or a settings key fails here.

Regenerate (only for an intended change of the outputs, named in CHANGELOG.md):
``python tests/cli/test_crop_pin.py``.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from fcnx.cli import cli

GOLDEN = Path(__file__).parents[1] / "data" / "crop_pin"
NETS = "tiny_vgg,tiny_resnet,tiny_inception"
#: every file's mtime in the copied demo (boxes.jsonl records it: source_mtime_ns)
MTIME_NS = 1_700_000_000_000_000_000
#: the pinned files: OUTDIR's tables and settings, the export, the CLI's lines
PINNED = (
    "boxes.jsonl",
    "boxes.csv",
    "settings.json",
    "coco.json",
    "yolo.txt",
    "stdout.txt",
    "square.jsonl",
    "square.csv",
    "square-settings.json",
)
#: the second run: the paper's square window, the authors' selection rule, a shorter pyramid
SQUARE = ["--box", "square", "--selection", "votes-first", "--max-scale", "2.0", "--step", "1.25"]


def _demo(root: Path) -> Path:
    import fcnx_tiny

    demo = shutil.copytree(Path(fcnx_tiny.__file__).parent / "demo", root / "demo")
    for path in sorted(demo.rglob("*")):
        os.utime(path, ns=(MTIME_NS, MTIME_NS))
    return demo


def _invoke(args: list[str]) -> str:
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def produce(root: Path) -> dict[str, bytes]:
    """Run crop and export under ``root``; the pinned files, with ``root`` spelled ``ROOT``."""
    demo = _demo(root)
    out = root / "out"
    reference = ["crop", "--nets", NETS, "--backend", "torch", "--jobs", "1", str(demo)]
    stdout = _invoke([*reference, "-o", str(out)])
    _invoke([*reference, *SQUARE, "-o", str(root / "square")])
    _invoke(["export", str(out), "--format", "coco", "-o", str(root / "coco")])
    _invoke(["export", str(out), "--format", "yolo", "--box", "square", "-o", str(root / "yolo")])
    yolo = root / "yolo"
    labels = b"".join(
        f"{path.relative_to(yolo)}\n".encode() + path.read_bytes() for path in sorted(yolo.rglob("*.txt"))
    )
    lines = "".join(line + "\n" for line in stdout.splitlines() if " -> " in line)
    files = {
        "boxes.jsonl": (out / "boxes.jsonl").read_bytes(),
        "boxes.csv": (out / "boxes.csv").read_bytes(),
        "settings.json": (out / ".fcnx-crop.json").read_bytes(),
        "coco.json": (root / "coco" / "labels.json").read_bytes(),
        "yolo.txt": labels,
        "stdout.txt": lines.encode(),
        "square.jsonl": (root / "square" / "boxes.jsonl").read_bytes(),
        "square.csv": (root / "square" / "boxes.csv").read_bytes(),
        "square-settings.json": (root / "square" / ".fcnx-crop.json").read_bytes(),
    }
    return {name: data.replace(str(root).encode(), b"ROOT") for name, data in files.items()}


@pytest.mark.slow
def test_crop_and_export_write_the_pinned_bytes(tmp_path, one_thread):
    produced = produce(tmp_path)
    assert sorted(produced) == sorted(PINNED)
    for name in PINNED:
        expected = (GOLDEN / name).read_bytes()
        assert produced[name] == expected, f"{name} differs from tests/data/crop_pin/{name}"


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        GOLDEN.mkdir(parents=True, exist_ok=True)
        for name, data in produce(Path(folder)).items():
            (GOLDEN / name).write_bytes(data)
    sys.stdout.write(f"wrote {len(PINNED)} files to {GOLDEN}\n")
