"""Any ``keras.applications`` CNN as a backbone, ``keras/<Application>`` (e.g. ``keras/EfficientNetV2B0``).

The classifier is the application's feature extractor (``include_top=False``) with a global
average pool and a dense head, as for the ``keras_*`` backbones. When the spec is first asked
for, the application is measured once and the record cached (:mod:`fcnx.backbones.probe`, keyed by
Keras version and application):

* its receptive-size formula, from ``compute_output_shape`` at many input sides (no arithmetic runs);
* its native input size: the input of the application with its own top (``include_top=True``;
  224, Keras' default, when that top takes any size);
* its preprocessing: the application module's own ``preprocess_input``, read off as the
  per-channel affine map (and channel order) it applies; applications that normalize inside the
  model (EfficientNet, ConvNeXt, MobileNetV3, RegNet ...) take pixels as they are;
* exactness: a random classifier at the kernel ``W_min(3)`` must give its logits through the FCN.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any

from fcnx.plugin import (
    BackboneSpec,
    Preprocess,
    ProbeError,
    UsageError,
    did_you_mean,
    formula_text,
    is_exact,
    measure_formula,
    measured,
    w_min,
)

#: a small class count for measuring: the head's width does not change the geometry
PROBE_CLASSES = 3
#: Keras' input size for applications whose own top takes any size (MobileNetV3)
DEFAULT_SIZE = 224
#: the exactness check's pooled side
EXACT_POOL = 3


def namespace() -> str:
    """The cache namespace of the installed Keras: measurements are redone for another version."""
    from fcnx_keras.runtime import keras

    return f"keras-{keras().__version__}"


def applications() -> list[str]:
    """The constructors of ``keras.applications`` (``ConvNeXtTiny``, ``DenseNet121``, ...)."""
    from fcnx_keras.runtime import keras

    apps = keras().applications
    return sorted(name for name in dir(apps) if name[:1].isupper() and callable(getattr(apps, name)))


def check_name(app: str) -> None:
    """A one-line :class:`UsageError` unless ``keras.applications`` has the constructor ``app``."""
    known = applications()
    if app not in known:
        raise UsageError(f"unknown keras.applications model {app!r}{did_you_mean(app, known)}")


def preprocess_of(app: str) -> Preprocess:
    """The application's ``preprocess_input`` as a :class:`Preprocess` (``ValueError`` if it is not affine per channel)."""
    import numpy as np

    from fcnx_keras.classifier import application

    module = importlib.import_module(application(app).__module__)
    pixels = np.array([[[[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]]]], dtype="float32")
    out = np.asarray(module.preprocess_input(pixels.copy()), dtype="float64")[0, 0]
    base, response = out[0], out[1:] - out[0]  # response[i, o]: output channel o per input channel i
    if np.allclose(response, np.diag(np.diag(response))):
        order, slopes, shifts = "RGB", np.diag(response), base
    elif np.allclose(response, np.fliplr(np.diag(np.diag(np.fliplr(response))))):
        order, slopes, shifts = "BGR", np.diag(np.fliplr(response)), base[::-1]
    else:
        raise ValueError(f"keras.applications.{app}'s preprocess_input mixes channels")
    if np.any(slopes <= 0):
        raise ValueError(f"keras.applications.{app}'s preprocess_input is not increasing in every channel")
    std = 1.0 / slopes  # in 1/255 units of a pixel: input = (pixel / 255 - mean) / std
    return Preprocess(
        mean=tuple(float(v) + 0.0 for v in -shifts * std),  # type: ignore[arg-type]  # + 0.0: no -0.0
        std=tuple(float(v) for v in std),  # type: ignore[arg-type]
        channel_order=order,  # type: ignore[arg-type]
    )


def _feature_side(base: Any, w: int) -> int:
    return int(base.compute_output_shape((1, w, w, 3))[1])


def _exactness(app: str, kernel: int, pool: int) -> tuple[float, float]:
    """``(max |FCN - classifier|, max |logit|)`` of a seeded random classifier on ``2 x kernel x kernel`` noise."""
    import torch

    from fcnx_keras.classifier import KerasClassifier
    from fcnx_keras.fcn import convolutionalize
    from fcnx_keras.runtime import keras

    keras().utils.set_random_seed(0)
    classifier = KerasClassifier(f"keras/{app}", app, PROBE_CLASSES)
    x = torch.randn(2, 3, kernel, kernel, generator=torch.Generator().manual_seed(0))
    expected, got = classifier(x), convolutionalize(classifier, pool)(x)
    if tuple(got.shape[-2:]) != (1, 1):
        raise ProbeError(f"its FCN gives {tuple(got.shape[-2:])} cells at the kernel {kernel}, not (1, 1)")
    return float((got[:, :, 0, 0] - expected).abs().max()), float(expected.abs().max())


def measure(app: str) -> dict[str, Any]:
    """The record of ``keras.applications.<app>``: formula, native size, preprocessing, exactness, or why not."""
    from fcnx_keras.classifier import application, fresh_base

    try:
        base = fresh_base(app)
    except Exception as exc:
        return {"error": f"it does not build for any input size ({type(exc).__name__}: {exc})"}
    if len(base.output.shape) != 4:
        return {"error": f"its features are {base.output.shape}, not an N x H x W x C feature map"}
    try:
        stride, offset = measure_formula(functools.partial(_feature_side, base))
        pre = preprocess_of(app)
    except (ProbeError, ValueError) as exc:
        return {"error": str(exc)}
    size = application(app)(include_top=True, weights=None).input_shape[1] or DEFAULT_SIZE
    kernel = w_min(EXACT_POOL, stride, offset)
    try:
        diff, scale = _exactness(app, kernel, EXACT_POOL)
    except (ProbeError, TypeError, ValueError) as exc:
        return {"error": f"its FCN does not run at the kernel {kernel} ({type(exc).__name__}: {exc})"}
    record: dict[str, Any] = {
        "stride": stride,
        "offset": offset,
        "default_size": int(size),
        "mean": list(pre.mean),
        "std": list(pre.std),
        "channel_order": pre.channel_order,
        "kernel": kernel,
        "max_abs_diff": diff,
        "scale": scale,
    }
    if not is_exact(diff, scale):
        record["error"] = f"at the kernel {kernel} its FCN differs from the classifier by {diff:.3g}"
    return record


def record_of(app: str) -> dict[str, Any]:
    """The cached record of ``app``, measured now if there is none."""
    return measured(namespace(), app, lambda: measure(app))


def spec_for(app: str) -> BackboneSpec:
    """The spec of ``keras/<app>``: measured (or cached) geometry, size and preprocessing."""
    from fcnx_keras import PREFIX, keras_spec

    check_name(app)
    record = record_of(app)
    if "error" in record:
        raise UsageError(f"keras.applications.{app} cannot be convolutionalized: {record['error']}")
    stride, offset = int(record["stride"]), int(record["offset"])
    return keras_spec(
        name=PREFIX + app,
        app=app,
        stride=stride,
        offset=offset,
        size=int(record["default_size"]),
        preprocess=Preprocess(
            mean=tuple(record["mean"]),
            std=tuple(record["std"]),
            channel_order=record["channel_order"],
        ),
        padding="same" if offset <= 0 else "valid",
        pretrained=(),
        description=f"keras.applications.{app} (measured {formula_text(stride, offset)}; FCN = "
        f"classifier to {record['max_abs_diff'] / max(1.0, record['scale']):.0e} at {record['kernel']})",
    )
