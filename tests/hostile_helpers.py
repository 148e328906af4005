"""What the hostile-input suites share: a mixed ensemble of the tiny registry, a dataset of coloured squares, the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from click.testing import CliRunner, Result
from PIL import Image

from fcnx.cli import cli

#: a mixed ensemble under --kernel native (the tiny registry's nets and their input sizes)
NETS = {"tiny0": 128, "tiny_s16": 160}
COLORS = {"red": (230, 20, 20), "green": (20, 230, 20), "blue": (20, 20, 230), "none": (128, 128, 128)}


def dataset(root: Path) -> Path:
    """Class folders, one image each: a coloured square on grey."""
    for name, color in COLORS.items():
        pixels = np.full((170, 200, 3), 128, np.uint8)
        pixels[20:150, 30:160] = color
        (root / name).mkdir(parents=True)
        Image.fromarray(pixels).save(root / name / "0.png")
    return root


def invoke(*args: object) -> Result:
    """``fcnx ARGS`` in process; an exception that is not a clean exit fails the test."""
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def last_line(result: Result) -> str:
    return result.stderr.splitlines()[-1]
