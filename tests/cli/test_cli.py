"""The CLI as a user meets it: help, version, list-backbones, info, and what stays unimported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import fcnx_tiny
from fcnx import __version__
from fcnx.cli import COMMANDS, cli


def test_version_and_help_list_every_command():
    runner = CliRunner()
    assert runner.invoke(cli, ["--version"]).output.strip() == f"fcnx, version {__version__}"
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output
    assert "Examples:" in result.output


def test_every_available_command_has_examples_in_its_help():
    runner = CliRunner()
    for name in ("list-backbones", "info"):
        result = runner.invoke(cli, [name, "--help"])
        assert result.exit_code == 0 and "Examples:" in result.output, name


def test_list_backbones_table_shows_formulas_and_d_at_299():
    result = CliRunner().invoke(cli, ["list-backbones"])
    assert result.exit_code == 0
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:]}
    assert rows["vgg16"][1:6] == ["pytorch", "timm", "32D", "9", "224"]
    assert rows["inception_v3"][3:5] == ["32D+43", "8"]
    assert rows["inception_resnet_v2"][3:5] == ["32D+43", "8"]
    assert rows["xception"][3:5] == ["32D-25", "10"]
    assert rows["resnet50"][3:5] == ["32D-31", "10"]


def test_list_backbones_json():
    data = json.loads(CliRunner().invoke(cli, ["list-backbones", "--json", "xception"]).stdout)
    (xc,) = data["backbones"]
    assert (xc["formula"], xc["stride"], xc["offset"], xc["d_at_299"], xc["available"]) == ("32D-25", 32, -25, 10, True)
    assert xc["preprocess"] == {"mean": [0.5] * 3, "std": [0.5] * 3, "channel_order": "RGB"}


def test_info_tabulates_w_ranges():
    result = CliRunner().invoke(cli, ["info", "inception_v3", "--d-range", "7:9", "--json"])
    data = json.loads(result.stdout)
    assert data["w_to_d"] == [
        {"D": 7, "W_min": 267, "W_max": 298},
        {"D": 8, "W_min": 299, "W_max": 330},
        {"D": 9, "W_min": 331, "W_max": 362},
    ]
    text = CliRunner().invoke(cli, ["info", "inception_v3", "--d-range", "8:8"]).stdout
    assert "W_min(D) = 32D+43" in text and "8  299..330" in text


def test_bad_d_range_is_a_usage_error():
    result = CliRunner().invoke(cli, ["info", "vgg16", "--d-range", "x"])
    assert result.exit_code == 2 and "--d-range must be FIRST:LAST" in result.stderr


def test_help_and_listing_never_import_frameworks():
    code = (
        "import sys; from fcnx.cli import cli\n"
        "for args in (['--help'], ['list-backbones'], ['info', 'xception']):\n"
        "    try: cli.main(args=args, prog_name='fcnx')\n"
        "    except SystemExit: pass\n"
        "print(sorted(m for m in ('torch', 'tensorflow', 'timm', 'keras') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_library_errors_name_the_parameter_and_the_cli_its_option(tmp_path):
    from fcnx.engine.ensemble import load_ensemble
    from fcnx.errors import UsageError

    with pytest.raises(
        UsageError, match=r"^weights given for vgg16, which is not among the nets \(tiny_vgg\)$"
    ) as info:
        load_ensemble(["tiny_vgg"], {"vgg16": "x.safetensors"})
    assert info.value.parameter == "weights"
    demo = Path(fcnx_tiny.__file__).parent / "demo" / "images"
    result = CliRunner().invoke(
        cli, ["crop", "--nets", "tiny_vgg", "--device", "cpu", "--half", str(demo), "-o", str(tmp_path / "out")]
    )
    assert result.exit_code == 2
    assert "Error: --half: half precision needs a CUDA or MPS device, not cpu" in result.stderr
