"""``fcnx convert``: Keras Inception-v3 / Xception / Inception-ResNet-v2 weights as fcnx PyTorch checkpoints
whose heatmaps equal the Keras ones (max |diff| <= 1e-3) on an input larger than the kernel."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner
from keras_helpers import CLASSES, needs_tf

from fcnx.cli import cli

pytestmark = needs_tf
KERNEL = 299


def _convert(tmp_path, name, head):
    from fcnx_keras.testing import random_classifier, save_keras

    keras_file = save_keras(
        random_classifier(name, CLASSES, head=head, size=KERNEL), tmp_path / f"{name}.h5", CLASSES, input_size=KERNEL
    )
    out = tmp_path / f"{name}.safetensors"
    result = CliRunner().invoke(cli, ["convert", str(keras_file), "-o", str(out), "--no-check"])
    assert result.exit_code == 0, result.output
    return keras_file, out, result.stdout


@pytest.mark.parametrize(
    "name, head, torch_name",
    [
        ("keras_xception", (16, 8), "xception"),
        pytest.param("keras_inception_v3", (), "inception_v3", marks=pytest.mark.slow),
        pytest.param("keras_inception_resnet_v2", (16,), "inception_resnet_v2", marks=pytest.mark.slow),
    ],
)
def test_converted_checkpoint_gives_the_keras_heatmaps(tmp_path, name, head, torch_name):
    from fcnx.backbones import checkpoint
    from fcnx.engine.fcn import load_fcn

    keras_file, out, stdout = _convert(tmp_path, name, head)
    meta = checkpoint.read_meta(out)
    assert (meta.arch, meta.classes, meta.input_size, tuple(meta.head)) == (torch_name, CLASSES, KERNEL, head)
    assert meta.extra == {"pooling": "keras", "converted_from": name}
    assert stdout.startswith(f"wrote {out} ({torch_name}, 3 classes")
    keras_fcn = load_fcn(name, keras_file, kernel=KERNEL)
    torch_fcn = load_fcn(torch_name, out, kernel=KERNEL)
    pixels = torch.rand(1, 3, KERNEL + 64, KERNEL + 96, generator=torch.Generator().manual_seed(2)) * 255
    with torch.inference_mode():
        expected, got = keras_fcn(pixels), torch_fcn(pixels)
    assert got.shape == expected.shape == (1, 3, 3, 4)
    assert expected.abs().max() > 0.1
    assert (got - expected).abs().max().item() <= 1e-3
    if name != "keras_inception_resnet_v2":  # the control: timm's own pooling differs from Keras'
        plain = torch_fcn.spec.build(3, head, None)
        plain.load_state_dict(checkpoint.read_tensors(out))
        plain_fcn = torch_fcn.spec.convolutionalize(plain, torch_fcn.pool).eval()
        with torch.inference_mode():
            assert (plain_fcn(torch_fcn.normalize(pixels)) - expected).abs().max().item() > 1e-2


def test_convert_refuses_bad_requests(tmp_path):
    keras_file = tmp_path / "net.h5"
    keras_file.write_bytes(b"not hdf5 at all")
    (tmp_path / "classes.txt").write_text("a\nb\n")
    runner = CliRunner()
    out = tmp_path / "out.safetensors"
    cases = [
        (
            ["--backbone", "keras_resnet50", "--classes", str(tmp_path / "classes.txt")],
            "fcnx convert handles keras_inception_v3, keras_xception, keras_inception_resnet_v2, not 'keras_resnet50'",
            2,
        ),
        (["--classes", str(tmp_path / "classes.txt")], f"{keras_file}: no sidecar net.h5.json; give --backbone", 2),
        (["--backbone", "keras_xception"], f"{keras_file}: no class names; give --classes FILE or a sidecar", 2),
        (
            ["--backbone", "keras_xception", "--classes", str(tmp_path / "classes.txt")],
            f"{keras_file}: not a readable HDF5 file (truncated or corrupt",
            1,
        ),
    ]
    for args, message, code in cases:
        result = runner.invoke(cli, ["convert", str(keras_file), "-o", str(out), *args])
        assert result.exit_code == code, result.output
        assert result.stderr.startswith(f"Error: {message}") and len(result.stderr.strip().splitlines()) == 1
    out.write_text("precious")
    result = runner.invoke(cli, ["convert", str(keras_file), "-o", str(out), "--backbone", "keras_xception"])
    assert result.exit_code == 2 and "exists; pass --force to overwrite it" in result.stderr
    assert out.read_text() == "precious"
