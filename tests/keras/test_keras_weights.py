"""Keras weight files: full models (.keras, legacy .h5), weights-only files (flat and nested), class
names from the sidecar, and every bad input refused in one line naming the file -- a Lambda or a
custom object is refused before anything in the file can run."""

from __future__ import annotations

import json
import zipfile

import pytest
import torch
from click.testing import CliRunner
from keras_helpers import CLASSES, needs_tf

from fcnx.cli import cli
from fcnx.errors import FcnxError, WeightsError

pytestmark = needs_tf
NAME = "keras_xception"
KERNEL = 71  # Xception's smallest D=3 input: quick on 2 cores
CALIBRATION_SIZE = 96


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """One calibrated random Xception with the paper's kind of head, saved in every format."""
    from fcnx_keras.testing import random_classifier, save_keras

    folder = tmp_path_factory.mktemp("keras_files")
    classifier = random_classifier(NAME, CLASSES, head=(8,), size=CALIBRATION_SIZE, seed=3)
    files = {
        fmt: save_keras(classifier, folder / f"xc{fmt}", CLASSES, input_size=KERNEL)
        for fmt in (".keras", ".h5", ".weights.h5")
    }
    pixels = torch.rand(2, 3, KERNEL, KERNEL, generator=torch.Generator().manual_seed(5)) * 255
    return classifier, files, pixels


def _logits(fcn, pixels):
    with torch.inference_mode():
        return fcn(pixels)[:, :, 0, 0]


@pytest.mark.parametrize("fmt", [".keras", ".h5", ".weights.h5"])
def test_every_format_loads_the_same_net_with_sidecar_classes(source, fmt):
    from fcnx.engine.fcn import load_fcn

    classifier, files, pixels = source
    fcn = load_fcn(NAME, files[fmt])
    assert fcn.classes == CLASSES and fcn.kernel == KERNEL
    expected = classifier(fcn.normalize(pixels))
    assert expected.abs().max() > 1e-2
    assert (_logits(fcn, pixels) - expected).abs().max() <= 1e-4


def test_nested_model_and_final_softmax_and_nested_weights(source, tmp_path):
    """A base nested as one layer (Keras' transfer-learning guide) and a separate softmax layer."""
    from fcnx.engine.fcn import load_fcn
    from fcnx_keras.runtime import keras

    k = keras()
    classifier, _, pixels = source
    parts = classifier.parts()
    base = k.Model(classifier.model.inputs, parts.pool.input)
    inputs = k.Input((None, None, 3))
    x = base(inputs)
    for layer in [parts.pool, *parts.head]:
        x = layer(x)
    nested = k.Model(inputs, k.layers.Softmax()(x))
    nested.save(tmp_path / "nested.keras")
    nested.save_weights(tmp_path / "nested.weights.h5")
    fcn = load_fcn(NAME, tmp_path / "nested.keras", classes=CLASSES, kernel=KERNEL)
    expected = classifier(fcn.normalize(pixels))
    assert (_logits(fcn, pixels) - expected).abs().max() <= 1e-4
    assert torch.allclose(
        _logits(fcn, pixels).softmax(1),
        torch.from_numpy(nested.predict(fcn.normalize(pixels).permute(0, 2, 3, 1).numpy(), verbose=0)),
        atol=1e-5,
    )
    weights_only = load_fcn(NAME, tmp_path / "nested.weights.h5", classes=CLASSES, kernel=KERNEL, head=(8,))
    assert (_logits(weights_only, pixels) - expected).abs().max() <= 1e-4


def _lambda_model(marker):
    from fcnx_keras.runtime import keras

    k = keras()
    # a self-contained lambda (as a real attacker's would be), writing the marker file whenever it runs
    payload = eval(f"lambda t: (__import__('pathlib').Path({str(marker)!r}).write_text('payload ran'), t)[1]")
    base = k.applications.Xception(include_top=False, weights=None, input_shape=(None, None, 3))
    x = k.layers.Lambda(payload, name="innocent_scaling")(base.output)
    x = k.layers.GlobalAveragePooling2D()(x)
    return k.Model(base.input, k.layers.Dense(len(CLASSES))(x))


def test_lambda_payload_is_refused_and_never_runs(tmp_path):
    from fcnx.engine.fcn import load_fcn
    from fcnx_keras.runtime import keras

    marker = tmp_path / "pwned.txt"
    model = _lambda_model(marker)
    marker.unlink()  # building the model ran the payload once, symbolically
    model.save(tmp_path / "evil.keras")
    keras().saving.load_model(tmp_path / "evil.keras", safe_mode=False)  # the control: an unsafe load runs it
    assert marker.read_text() == "payload ran"
    marker.unlink()
    with pytest.raises(
        WeightsError, match="refused: the model holds a Lambda layer 'innocent_scaling' with Python code"
    ):
        load_fcn(NAME, tmp_path / "evil.keras", classes=CLASSES)
    result = CliRunner().invoke(
        cli,
        [
            "convert",
            str(tmp_path / "evil.keras"),
            "--backbone",
            NAME,
            "-o",
            str(tmp_path / "out.safetensors"),
            "--classes",
            str(_classes_file(tmp_path)),
        ],
    )
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"Error: {tmp_path / 'evil.keras'}: refused: the model holds a Lambda "
        f"layer 'innocent_scaling' with Python code, which fcnx never runs from "
        f"a file; rebuild the model without it or save its weights only"
    ]
    assert not marker.exists() and not (tmp_path / "out.safetensors").exists()


def _classes_file(folder):
    path = folder / "classes.txt"
    path.write_text("\n".join(CLASSES) + "\n")
    return path


def _rewrite_config(src, dst, edit):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                edit(config)
                data = json.dumps(config).encode()
            zout.writestr(item, data)


def test_custom_object_outside_keras_is_refused(source, tmp_path):
    from fcnx.engine.fcn import load_fcn

    _, files, _ = source

    def use_os_system(config):
        dense = next(layer for layer in config["config"]["layers"] if layer["class_name"] == "Dense")
        dense["config"]["activation"] = {
            "module": "os",
            "class_name": "function",
            "config": "system",
            "registered_name": "function",
        }

    _rewrite_config(files[".keras"], tmp_path / "custom.keras", use_os_system)
    with pytest.raises(
        WeightsError, match=r"refused: the model refers to the custom object os\.function, outside Keras"
    ):
        load_fcn(NAME, tmp_path / "custom.keras", classes=CLASSES)

    def unknown_layer(config):
        config["config"]["layers"][-1]["class_name"] = "MyMagicLayer"
        config["config"]["layers"][-1]["module"] = None

    _rewrite_config(files[".keras"], tmp_path / "unknown.keras", unknown_layer)
    with pytest.raises(WeightsError, match=r"refused: layer 'predictions' is a MyMagicLayer"):
        load_fcn(NAME, tmp_path / "unknown.keras", classes=CLASSES)


def test_bad_files_are_one_line_errors_naming_the_file(source, tmp_path):
    from fcnx.engine.fcn import load_fcn

    _, files, _ = source
    truncated_h5 = tmp_path / "cut.h5"
    truncated_h5.write_bytes(files[".h5"].read_bytes()[:40000])
    truncated_keras = tmp_path / "cut.keras"
    truncated_keras.write_bytes(files[".keras"].read_bytes()[:40000])
    cases = {
        truncated_h5: "not a readable HDF5 file (truncated or corrupt",
        truncated_keras: "not a readable .keras file (truncated or corrupt",
    }
    for path, message in cases.items():
        with pytest.raises(WeightsError) as info:
            load_fcn(NAME, path, classes=CLASSES)
        assert str(info.value).startswith(f"{path}: {message}") and "\n" not in str(info.value)
    with pytest.raises(WeightsError, match=r"xc\.keras: the model has 3 outputs but 2 classes were given"):
        load_fcn(NAME, files[".keras"].rename(tmp_path / "xc.keras"), classes=CLASSES[:2])
    (tmp_path / "xc.keras").rename(files[".keras"])
    with pytest.raises(
        WeightsError,
        match=r"does not match keras_inception_v3 \(keras.applications.InceptionV3\): "
        r"layer 0 is SeparableConv2D|does not match keras_inception_v3",
    ):
        load_fcn("keras_inception_v3", _copy(files[".h5"], tmp_path / "xc_as_iv3.h5"), classes=CLASSES)
    weights_only = _copy(files[".weights.h5"], tmp_path / "two.weights.h5")
    with pytest.raises(
        WeightsError,
        match=r"two\.weights\.h5: does not fit keras_xception with 2 classes and head "
        r"\[8\]: tensor predictions/kernel has shape \(8, 3\) in the file, the "
        r"architecture expects \(8, 2\)",
    ):
        load_fcn(NAME, weights_only, classes=CLASSES[:2], head=(8,))
    with pytest.raises(WeightsError, match=r"unknown Keras weight format '\.bin'"):
        load_fcn(NAME, _copy(files[".h5"], tmp_path / "weights.bin"), classes=CLASSES)


def _copy(src, dst):
    dst.write_bytes(src.read_bytes())
    return dst


def test_imagenet_weights_without_network_is_one_clear_error(tmp_path, monkeypatch):
    from fcnx.engine.fcn import load_fcn

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # no cached download
    with pytest.raises(FcnxError) as info:
        load_fcn("keras_resnet50", "imagenet")
    message = str(info.value)
    assert message.startswith("cannot fetch Keras 'imagenet' weights for keras_resnet50 (")
    assert message.endswith("without network access pass a weight file (.keras, .h5, .weights.h5)")
