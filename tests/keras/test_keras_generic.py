"""Any keras.applications CNN as ``keras/<Application>``: preprocessing read off Keras' own
``preprocess_input``, the measured formula holds on the FCN, a loaded weight file's FCN (full
model or weights only) equals its classifier at the kernel, and nets that cannot slide are refused in one line."""

from __future__ import annotations

import pytest
from keras_helpers import CLASSES, needs_tf

from fcnx.backbones import probe, registry
from fcnx.errors import UsageError
from fcnx.testing import formula_boundaries

pytestmark = needs_tf


@pytest.fixture(autouse=True)
def measurement_cache(tmp_path_factory, monkeypatch):
    """One fresh measurement cache for the module; resolved specs forgotten after each test."""
    monkeypatch.setenv("FCNX_CACHE", str(tmp_path_factory.getbasetemp() / "fcnx-cache"))
    yield
    registry.refresh()


def test_preprocessing_is_keras_preprocess_input():
    from fcnx_keras import CAFFE, TF_MODE
    from fcnx_keras.generic import preprocess_of

    for app, expected in (("VGG16", CAFFE), ("ResNet50", CAFFE), ("InceptionV3", TF_MODE)):
        got = preprocess_of(app)
        assert got.channel_order == expected.channel_order
        assert got.mean == pytest.approx(expected.mean, abs=1e-6) and got.std == pytest.approx(expected.std, abs=1e-6)
    torch_mode = preprocess_of("DenseNet121")  # (x / 255 - ImageNet mean) / std
    assert torch_mode.mean == pytest.approx((0.485, 0.456, 0.406), abs=1e-6)
    assert torch_mode.std == pytest.approx((0.229, 0.224, 0.225), abs=1e-6)
    inside = preprocess_of("EfficientNetV2B0")  # the model normalizes itself: pixels go in as they are
    assert inside.mean == (0.0, 0.0, 0.0) and inside.std == pytest.approx((1 / 255,) * 3)


def _formula_holds_and_loaded_fcn_is_exact(tmp_path, app: str, suffix: str) -> None:
    import torch

    from fcnx.engine.fcn import load_fcn
    from fcnx_keras.fcn import keras_fcn
    from fcnx_keras.generic import EXACT_POOL, namespace
    from fcnx_keras.testing import random_classifier, save_keras

    name = f"keras/{app}"
    spec = registry.get_backbone(name)
    record = probe.cached_record(namespace(), app)
    assert record is not None and probe.is_exact(record["max_abs_diff"], record["scale"])
    kernel = spec.w_min(EXACT_POOL)
    classifier = random_classifier(name, CLASSES, size=kernel)
    sizes, expected = formula_boundaries(spec, EXACT_POOL)
    fcn_model = keras_fcn(classifier, EXACT_POOL)
    assert [fcn_model.compute_output_shape((1, s, s + spec.stride, 3))[1] for s in sizes] == expected
    path = save_keras(classifier, tmp_path / f"net{suffix}", CLASSES, input_size=kernel)
    fcn = load_fcn(name, path)
    pixels = torch.rand(2, 3, kernel, kernel, generator=torch.Generator().manual_seed(1)) * 255
    want, got = fcn.classifier(fcn.normalize(pixels)), fcn(pixels)
    assert got.shape == (2, len(CLASSES), 1, 1) and want.abs().max() > 1e-3
    assert (got[:, :, 0, 0] - want).abs().max().item() <= 1e-4


def test_mobilenetv3_formula_and_exactness_from_a_full_model_file(tmp_path):
    # a .keras file holding the application's own layers (Rescaling, Multiply ...) is accepted
    _formula_holds_and_loaded_fcn_is_exact(tmp_path, "MobileNetV3Small", ".keras")


@pytest.mark.slow
@pytest.mark.parametrize("app", ["EfficientNetV2B0", "DenseNet121", "ConvNeXtTiny"])
def test_more_keras_applications_formula_and_exactness(tmp_path, app):
    _formula_holds_and_loaded_fcn_is_exact(tmp_path, app, ".weights.h5")


def test_the_builtin_keras_resnet50_formula_is_what_the_probe_measures():
    from fcnx_keras.classifier import fresh_base
    from fcnx_keras.generic import _feature_side

    base = fresh_base("ResNet50")
    spec = registry.get_backbone("keras_resnet50")
    assert probe.measure_formula(lambda w: _feature_side(base, w)) == (spec.stride, spec.offset) == (32, -31)


@pytest.mark.slow
def test_nasnet_runs_at_some_sides_only_and_is_refused_in_one_line():
    with pytest.raises(UsageError, match=r"keras.applications.NASNetMobile cannot be convolutionalized: it runs at"):
        registry.get_backbone("keras/NASNetMobile")


def test_unknown_application_suggests_close_names():
    with pytest.raises(UsageError, match=r"unknown keras.applications model 'ResNet5O' \(did you mean: ResNet50"):
        registry.get_backbone("keras/ResNet5O")
