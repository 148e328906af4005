"""Reading Keras weight files safely: full models (``.keras``, legacy ``.h5``) and weights-only files.

A full model's configuration is checked *before* Keras deserializes it: only the layer classes
the supported architectures and dense heads are made of are accepted, only objects from Keras'
own modules, and never a ``Lambda`` layer (whose Python code would run on load). Keras then loads
it with ``safe_mode=True`` as a second guard. Every problem becomes one :class:`WeightsError`
line naming the file.
"""

from __future__ import annotations

import functools
import json
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

from fcnx.plugin import WeightsError, check_weight_file
from fcnx_keras.classifier import POOLS, KerasClassifier, fresh_base, leaf_layers, signature, split

#: layer classes a full-model file may hold: the six bases, their heads, and model containers (plus, for
#: a ``keras/<Application>`` backbone, the classes of that application's own feature extractor)
ALLOWED_LAYERS = frozenset(
    {
        "InputLayer",
        "Functional",
        "Model",
        "Sequential",
        "Conv2D",
        "SeparableConv2D",
        "DepthwiseConv2D",
        "BatchNormalization",
        "Activation",
        "ReLU",
        "LeakyReLU",
        "ELU",
        "Softmax",
        "MaxPooling2D",
        "AveragePooling2D",
        "ZeroPadding2D",
        "Add",
        "Concatenate",
        "CustomScaleLayer",
        "Dense",
        "Dropout",
        "SpatialDropout2D",
        "GaussianDropout",
        "GaussianNoise",
        "AlphaDropout",
        *POOLS,
    }
)
CODE_LAYERS = frozenset({"Lambda", "__lambda__", "TFOpLambda", "SlicingOpLambda"})
FULL_MODEL_SUFFIXES = (".keras",)
H5_SUFFIXES = (".h5", ".hdf5")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _is_keras_module(module: Any) -> bool:
    return module is None or module == "keras" or str(module).startswith("keras.")


def _layer_name(node: dict) -> str | None:
    config = node.get("config")
    return node.get("name") or (config.get("name") if isinstance(config, dict) else None)


def check_config(config: Any, path: Path, allowed: frozenset[str] = ALLOWED_LAYERS) -> None:
    """Refuse a model configuration holding code (Lambda), objects from outside Keras, or layers not in ``allowed``."""
    stack: list[tuple[Any, bool]] = [(config, False)]
    while stack:
        node, is_layer = stack.pop()
        if isinstance(node, list):
            stack.extend((item, False) for item in node)
            continue
        if not isinstance(node, dict):
            continue
        cls = node.get("class_name")
        if cls is not None:
            name = _layer_name(node)
            if cls in CODE_LAYERS:
                raise WeightsError(
                    f"refused: the model holds a {cls} layer {name!r} with Python code, which fcnx never "
                    f"runs from a file; rebuild the model without it or save its weights only",
                    path,
                )
            module = node.get("module")
            registered = node.get("registered_name")
            if not _is_keras_module(module) or (registered and ">" in str(registered)):
                raise WeightsError(
                    f"refused: the model refers to the custom object {module or ''}{'.' if module else ''}"
                    f"{registered or cls}, outside Keras; fcnx loads only Keras' own layers",
                    path,
                )
            if cls == "function" and not str(module).startswith(("keras.activations", "keras.src.activations")):
                raise WeightsError(
                    f"refused: the model refers to the function {module}.{node.get('config')}, not a Keras activation",
                    path,
                )
            if is_layer and cls not in allowed:
                raise WeightsError(
                    f"refused: layer {name!r} is a {cls}, not a layer of the supported architectures or dense heads",
                    path,
                )
        for key, value in node.items():
            if key == "layers" and isinstance(value, list):
                stack.extend((item, True) for item in value)
            else:
                stack.append((value, False))


def model_config(path: Path) -> dict | None:
    """The model configuration of a full-model file, or ``None`` for a weights-only file."""
    if path.suffix in FULL_MODEL_SUFFIXES:
        try:
            with zipfile.ZipFile(path) as archive:
                return json.loads(archive.read("config.json"))
        except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
            raise WeightsError(f"not a readable .keras file (truncated or corrupt: {_first_line(exc)})", path) from None
    if path.name.endswith(".weights.h5") or path.suffix in H5_SUFFIXES:
        import h5py

        try:
            with h5py.File(path, "r") as f:
                text = f.attrs.get("model_config")
        except OSError as exc:
            raise WeightsError(f"not a readable HDF5 file (truncated or corrupt: {_first_line(exc)})", path) from None
        if text is None:
            return None
        try:
            return json.loads(text.decode() if isinstance(text, bytes) else text)
        except ValueError as exc:
            raise WeightsError(f"unreadable model configuration ({_first_line(exc)})", path) from None
    raise WeightsError(f"unknown Keras weight format {path.suffix!r} (use .keras, .h5 or .weights.h5)", path)


@functools.cache
def base_layer_classes(app: str) -> frozenset[str]:
    """The layer classes of ``keras.applications.<app>``'s feature extractor (Keras' own, no code)."""
    return frozenset(type(layer).__name__ for layer in leaf_layers(fresh_base(app))) - CODE_LAYERS


@functools.cache
def base_signature(app: str) -> tuple:
    """Layer classes and weight shapes of ``keras.applications.<app>``'s feature extractor."""
    return tuple(signature(list(leaf_layers(fresh_base(app)))))


def check_architecture(model: Any, classifier: KerasClassifier, path: Path) -> None:
    """Raise unless ``model`` is ``classifier``'s architecture with ``classifier.num_classes`` outputs."""
    try:
        parts = split(model)
    except ValueError as exc:
        raise WeightsError(f"not a {classifier.arch} classifier: the model {exc}", path) from None
    expected, found = base_signature(classifier.app), tuple(signature(parts.base))
    if expected != found:
        where = next((i for i, (a, b) in enumerate(zip(expected, found)) if a != b), min(len(expected), len(found)))
        detail = (
            f"layer {where} is {found[where][0]} {list(found[where][1])}, expected {expected[where][0]} "
            f"{list(expected[where][1])}"
            if where < min(len(expected), len(found))
            else f"{len(found)} layers before the global pool, expected {len(expected)}"
        )
        raise WeightsError(f"does not match {classifier.arch} (keras.applications.{classifier.app}): {detail}", path)
    outputs = model.outputs[0].shape[-1]
    if outputs != classifier.num_classes:
        raise WeightsError(f"the model has {outputs} outputs but {classifier.num_classes} classes were given", path)


def load_full_model(path: Path, allowed: frozenset[str] = ALLOWED_LAYERS) -> Any:
    """Deserialize a full-model file, checked to hold only ``allowed`` layers, with Keras' safe mode."""
    from fcnx_keras.runtime import keras

    config = model_config(path)
    if config is None:
        raise WeightsError("holds weights only, not a model", path)
    check_config(config, path, allowed)
    k = keras()  # first: sets up the import order
    from keras.src.applications.inception_resnet_v2 import CustomScaleLayer  # Keras' own block scaling

    try:
        return k.saving.load_model(
            path, compile=False, safe_mode=True, custom_objects={"CustomScaleLayer": CustomScaleLayer}
        )
    except Exception as exc:
        raise WeightsError(f"cannot load the Keras model ({type(exc).__name__}: {_first_line(exc)})", path) from None


def _mismatch(exc: BaseException) -> str:
    """Keras' weight-loading error in one line: the tensor and its two shapes when Keras names them."""
    text = str(exc)
    shapes = re.search(r"variable\.shape=(\([^)]*\)), Received: value\.shape=(\([^)]*\))", text)
    tensor = re.search(r"Variable path=([^,\s]+)", text)
    if shapes and tensor:
        return f"tensor {tensor.group(1)} has shape {shapes.group(2)} in the file, the architecture expects {shapes.group(1)}"
    return f"{type(exc).__name__}: {_first_line(exc)}"


def _try_load(model: Any, path: Path) -> str | None:
    """Load weights into ``model``; the reason it failed, or ``None``. Layers Keras skips count as a failure."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.load_weights(path)
        except Exception as exc:
            return _mismatch(exc)
    skipped = [str(w.message) for w in caught if "Skipping" in str(w.message) or "not loaded" in str(w.message)]
    return _first_line(Exception(skipped[0])) if skipped else None


def _load_weights_only(classifier: KerasClassifier, path: Path) -> None:
    """Load weights into the built classifier: as a flat model first, then with the base nested as one layer."""
    from fcnx_keras.runtime import keras

    k = keras()
    model = classifier.model
    candidates = [model]
    parts = split(model)
    if not any(isinstance(layer, k.Model) for layer in model.layers):
        base = k.Model(model.inputs, parts.pool.input)
        inputs = k.Input(model.inputs[0].shape[1:])
        x = base(inputs)
        for layer in [parts.pool, *parts.head]:
            x = layer(x)
        candidates.append(k.Model(inputs, x))
    reasons = [_try_load(candidate, path) for candidate in candidates[:1]]
    for candidate in candidates[1:]:
        if reasons[-1] is None:
            break
        reasons.append(_try_load(candidate, path))
    if reasons[-1] is not None:
        raise WeightsError(
            f"does not fit {classifier.arch} with {classifier.num_classes} classes and head "
            f"{list(classifier.head) or 'none'}: {reasons[0]}",
            path,
        )


def load_into(classifier: KerasClassifier, path: Path) -> None:
    """``load_weights`` of the Keras backbones: a full model replaces the built one, weights-only files fill it."""
    check_weight_file(path)
    config = model_config(path)
    if config is None:
        _load_weights_only(classifier, path)
        return
    model = load_full_model(path, ALLOWED_LAYERS | base_layer_classes(classifier.app))
    check_architecture(model, classifier, path)
    classifier.adopt(model)
