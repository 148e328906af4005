"""The Keras plugin as listed: names, formulas, preprocessing; TensorFlow never imported for listing or
torch-only work; without TensorFlow the Keras backbones are unavailable with the install hint."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner
from keras_helpers import KERAS_BACKBONES

from fcnx.cli import cli

FORMULAS = {
    "keras_vgg16": "32D",
    "keras_vgg19": "32D",
    "keras_inception_v3": "32D+43",
    "keras_inception_resnet_v2": "32D+43",
    "keras_xception": "32D-25",
    "keras_resnet50": "32D-31",
}


def test_keras_backbones_are_listed_with_framework_formula_and_preprocessing():
    data = json.loads(CliRunner().invoke(cli, ["list-backbones", "--json", "keras_*"]).stdout)
    records = {b["name"]: b for b in data["backbones"]}
    assert sorted(records) == sorted(KERAS_BACKBONES)
    assert {name: r["formula"] for name, r in records.items()} == FORMULAS
    assert {r["framework"] for r in records.values()} == {"keras"} and {r["plugin"] for r in records.values()} == {
        "keras"
    }
    assert [records[n]["d_at_299"] for n in KERAS_BACKBONES] == [9, 9, 8, 8, 10, 10]
    caffe = records["keras_vgg16"]["preprocess"]
    assert caffe["channel_order"] == "BGR"
    assert [round(m * 255, 3) for m in caffe["mean"]] == [123.68, 116.779, 103.939]
    assert [round(s * 255, 6) for s in caffe["std"]] == [1.0, 1.0, 1.0]
    assert records["keras_xception"]["preprocess"]["mean"] == [0.5] * 3
    assert records["keras_xception"]["pretrained"] == ["imagenet"]


def test_caffe_preprocessing_is_keras_caffe_mode():
    """fcnx's normalization of the caffe units equals keras' caffe mode: RGB->BGR, minus the BGR mean."""
    import torch

    from fcnx.backbones.registry import get_backbone
    from fcnx.engine.fcn import FCN

    fcn = FCN(
        spec=get_backbone("keras_resnet50"),
        classes=["a"],
        kernel=224,
        pool=7,
        net=None,
        device=torch.device("cpu"),
        classifier=None,
    )
    pixels = torch.tensor([10.0, 20.0, 30.0]).view(1, 3, 1, 1)
    assert fcn.normalize(pixels).flatten().tolist() == torch.tensor([30 - 103.939, 20 - 116.779, 10 - 123.68]).tolist()


def _modules_after(code: str, prelude: str = "") -> dict:
    script = (
        f"import json, sys\n{prelude}\n{code}\n"
        "print(json.dumps(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules and sys.modules[m])))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_help_listing_and_torch_only_work_never_import_tensorflow():
    cli_calls = (
        "from fcnx.cli import cli\n"
        "for args in (['--help'], ['list-backbones'], ['info', 'keras_xception'], ['convert', '--help']):\n"
        "    try: cli.main(args=args, prog_name='fcnx')\n"
        "    except SystemExit: pass"
    )
    assert _modules_after(cli_calls) == []
    torch_fcn = (
        "import torch\nfrom fcnx.engine.fcn import load_fcn\n"
        "fcn = load_fcn('resnet50', classes=['a', 'b'], kernel=65)\n"
        "assert fcn(torch.rand(1, 3, 97, 97) * 255).shape == (1, 2, 2, 2)"
    )
    assert _modules_after(torch_fcn) == []
    keras_fcn = "from fcnx.engine.fcn import load_fcn\nload_fcn('keras_resnet50', classes=['a', 'b'], kernel=65)"
    assert _modules_after(keras_fcn) == ["keras", "tensorflow"]  # the control: using a Keras backbone does import it


def test_without_tensorflow_keras_backbones_are_unavailable_with_the_hint():
    hide = "sys.modules['tensorflow'] = None; sys.modules['keras'] = None"
    script = (
        f"import json, sys\n{hide}\n"
        "from click.testing import CliRunner\nfrom fcnx.cli import cli\n"
        "listing = CliRunner().invoke(cli, ['list-backbones', '--json'])\n"
        "table = CliRunner().invoke(cli, ['list-backbones', 'keras_x*'])\n"
        "from fcnx.engine.fcn import load_fcn\nfrom fcnx.errors import UsageError\n"
        "try:\n    load_fcn('keras_xception', classes=['a'])\n    error = None\n"
        "except UsageError as exc:\n    error = str(exc)\n"
        "print(json.dumps({'listing': json.loads(listing.stdout), 'table': table.stdout, 'error': error}))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    data = json.loads(out.stdout.strip().splitlines()[-1])
    records = {b["name"]: b for b in data["listing"]["backbones"]}
    for name in KERAS_BACKBONES:
        assert not records[name]["available"] and records[name]["missing"] == ["tensorflow", "keras"]
        assert "pip install 'fcnx[keras]'" in records[name]["install_hint"]
    assert records["xception"]["available"] and records["inception_v3"]["available"]
    assert "unavailable (pip install 'fcnx[keras]'" in data["table"]
    assert data["error"].startswith("backbone 'keras_xception' needs tensorflow, keras: pip install 'fcnx[keras]'")
