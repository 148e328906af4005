"""Exact convolutionalization of the Keras backbones: on a kernel x kernel input the FCN returns the
classifier's logits (max |diff| <= 1e-4), on a larger input a heatmap of the predicted shape; the
FCN is a torch module the rest of fcnx calls like any PyTorch FCN."""

from __future__ import annotations

import pytest
import torch
from keras_helpers import CLASSES, KERAS_BACKBONES, needs_tf

pytestmark = needs_tf


def _check_exact(fcn, kernel: int, extra: tuple[int, int] = (64, 32)) -> float:
    generator = torch.Generator().manual_seed(1)
    pixels = torch.rand(2, 3, kernel, kernel, generator=generator) * 255
    with torch.inference_mode():
        expected = fcn.classifier(fcn.normalize(pixels))
        got = fcn(pixels)
        larger = fcn(torch.rand(1, 3, kernel + extra[0], kernel + extra[1], generator=generator) * 255)
    assert got.shape == (2, len(fcn.classes), 1, 1) and got.dtype == torch.float32
    assert expected.abs().max() > 1e-2  # a meaningful comparison, not zeros against zeros
    diff = (got[:, :, 0, 0] - expected).abs().max().item()
    assert diff <= 1e-4
    assert tuple(larger.shape[-2:]) == fcn.spec.heatmap_shape(kernel + extra[0], kernel + extra[1], kernel)
    assert tuple(larger.shape[-2:]) == (extra[0] // 32 + 1, extra[1] // 32 + 1)
    return diff


@pytest.mark.parametrize("name", KERAS_BACKBONES)
def test_fcn_equals_classifier_at_kernel_and_gives_heatmap_above(name):
    from fcnx.backbones.registry import get_backbone
    from fcnx.engine.fcn import FCN
    from fcnx_keras.fcn import KerasFCNModule
    from fcnx_keras.testing import random_classifier

    spec = get_backbone(name)
    kernel = spec.w_min(4)  # small inputs keep TensorFlow on 2 cores quick; tests at 299 are marked slow
    classifier = random_classifier(name, CLASSES, size=kernel)
    net = spec.convolutionalize(classifier, spec.pool_size(kernel))
    assert isinstance(net, KerasFCNModule) and isinstance(net, torch.nn.Module)
    fcn = FCN(
        spec=spec,
        classes=CLASSES,
        kernel=kernel,
        pool=spec.pool_size(kernel),
        net=net.eval(),
        device=torch.device("cpu"),
        classifier=classifier,
    )
    _check_exact(fcn, kernel)


@pytest.mark.slow
@pytest.mark.parametrize("name", KERAS_BACKBONES)
def test_fcn_with_the_papers_dense_head_at_kernel_299(name):
    """The paper's head (dense, batch-norm, ReLU, dropout blocks; small widths here), converted layer by layer."""
    from fcnx.backbones.registry import get_backbone
    from fcnx.engine.fcn import FCN
    from fcnx_keras.testing import random_classifier

    spec = get_backbone(name)
    classifier = random_classifier(name, CLASSES, head=(32, 16), size=299)
    names = [type(layer).__name__ for layer in classifier.parts().head]
    assert names == ["Dense", "BatchNormalization", "Activation", "Dropout"] * 2 + ["Dense"]
    fcn = FCN(
        spec=spec,
        classes=CLASSES,
        kernel=299,
        pool=spec.pool_size(299),
        net=spec.convolutionalize(classifier, spec.pool_size(299)),
        device=torch.device("cpu"),
        classifier=classifier,
    )
    _check_exact(fcn, 299)


def test_vgg_imagenet_top_runs_fc1_as_a_7x7_convolution():
    """Keras VGG's own top (Flatten, fc1, fc2, predictions with softmax): exact at 224, pooled D-6 beyond."""
    from fcnx.backbones.registry import get_backbone
    from fcnx.engine.fcn import FCN
    from fcnx_keras.runtime import keras

    k = keras()
    k.utils.set_random_seed(0)
    spec = get_backbone("keras_vgg16")
    model = k.applications.VGG16(weights=None, include_top=True, classes=3)  # softmax, like the real file
    pixels = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0)) * 255
    fcn = FCN(spec=spec, classes=CLASSES, kernel=224, pool=7, net=None, device=torch.device("cpu"), classifier=None)
    nhwc = fcn.normalize(pixels).permute(0, 2, 3, 1).numpy()
    predictions = model.get_layer("predictions")  # rescaled so that a random VGG's logits are of order one
    kernel, bias = predictions.get_weights()
    scale = (
        3.0 / abs(k.Model(model.input, model.get_layer("fc2").output).predict(nhwc, verbose=0) @ kernel + bias).max()
    )
    predictions.set_weights([kernel * scale, bias * scale])
    probabilities = torch.from_numpy(model.predict(nhwc, verbose=0))
    classifier = spec.build(3, (), None)
    classifier.adopt(model)
    fcn.classifier, fcn.net = classifier, spec.convolutionalize(classifier, 7)
    with torch.inference_mode():
        expected, got = classifier(fcn.normalize(pixels)), fcn(pixels)[:, :, 0, 0]
    assert expected.abs().max() > 1 and (got - expected).abs().max() <= 1e-4
    assert torch.allclose(got.softmax(1), probabilities, atol=1e-5)  # the softmax was dropped: logits
    wide = spec.convolutionalize(classifier, spec.pool_size(288))  # kernel 288: D = 9, pool 3 after fc2
    layer_names = [layer.name for layer in wide.keras_model.layers]
    assert layer_names[-4:] == ["fc1_conv", "fc2_conv", "fcn_pool", "predictions_conv"]
    assert wide.keras_model.get_layer("fcn_pool").pool_size == (3, 3)
    with torch.inference_mode():
        assert wide(fcn.normalize(torch.rand(1, 3, 288 + 64, 288, generator=torch.Generator()) * 255)).shape == (
            1,
            3,
            3,
            1,
        )
    with pytest.raises(ValueError, match="at least 7 cells"):
        spec.convolutionalize(classifier, 6)


def test_head_layer_without_spatial_twin_is_refused():
    from fcnx.backbones.registry import get_backbone
    from fcnx_keras.runtime import keras

    k = keras()
    spec = get_backbone("keras_xception")
    base = k.applications.Xception(include_top=False, weights=None, input_shape=(None, None, 3))
    x = k.layers.GlobalAveragePooling2D()(base.output)
    x = k.layers.LayerNormalization(name="odd_norm")(x)
    classifier = spec.build(3, (), None)
    classifier.adopt(k.Model(base.input, k.layers.Dense(3)(x)))
    with pytest.raises(TypeError, match="cannot convolutionalize head layer 'odd_norm' \\(LayerNormalization\\)"):
        spec.convolutionalize(classifier, 3)
