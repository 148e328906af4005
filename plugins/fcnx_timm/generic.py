"""Any timm CNN as a backbone, ``timm/<model_name>``, with no table entry.

A timm model qualifies when its classifier is a global pool followed by layers that treat the
pooled vector on its own (``forward_features`` then ``forward_head``): ResNets, ConvNeXts, RegNets,
EfficientNets, MobileNets ... When the spec is first asked for, the model is measured once and the
record cached (:mod:`fcnx.backbones.probe`, keyed by timm version and architecture):

* its receptive-size formula, from feature-map sides on the meta device (no arithmetic runs);
* exactness: a random initialisation on the CPU, at the kernel ``W_min(3)`` (VGG: ``W_min(7)``), must give the
  classifier's logits through the FCN (:func:`fcnx.backbones.is_exact`).

Input size and mean/std are timm's ``pretrained_cfg`` (of the model name's tag, else
of its first ImageNet-1k tag); ``--weights pretrained`` loads that tag. A model that cannot be
convolutionalized (transformers, attention pooling, heads mixing cells) is refused in one line.
"""

from __future__ import annotations

import functools
from typing import Any

from fcnx.plugin import (
    BackboneSpec,
    Preprocess,
    ProbeError,
    UsageError,
    cached_record,
    did_you_mean,
    formula_text,
    is_exact,
    measure_formula,
    measured,
    w_min,
)

INSTALL_HINT = "pip install torch timm"
IMAGENET_CLASSES = 1000
#: a small class count for measuring: the head's width does not change the geometry
PROBE_CLASSES = 3
#: the exactness check's pooled side: windows of 3 x 3 cells (more for heads that need more)
EXACT_POOL = 3


def namespace() -> str:
    """The cache namespace of the installed timm: measurements are redone for another version."""
    import timm

    return f"timm-{timm.__version__}"


def global_pool_kind(model: Any) -> str:
    """The sliding-window form of the model's global pool (``avg``, ``max``, ``avgmax``); ``ValueError`` if none.

    The pool is the last timm ``SelectAdaptivePool2d`` of the model, the one its head applies.
    """
    from timm.layers import SelectAdaptivePool2d

    from fcnx.plugin import WINDOW_POOLS

    pools = [m for m in model.modules() if isinstance(m, SelectAdaptivePool2d)]
    if not pools:
        raise ValueError(
            f"its head ({type(model).__name__}.forward_head) has no global average/max pool "
            "(timm SelectAdaptivePool2d) but pools tokens or attends over cells"
        )
    kind = pools[-1].pool_type
    if kind.startswith("fast"):
        kind = kind[len("fast") :] or "avg"
    if kind not in WINDOW_POOLS:
        raise ValueError(
            f"its global pool {pools[-1].pool_type!r} has no sliding-window form (known: avg, max, avgmax)"
        )
    return kind


def min_pool(model: Any) -> int:
    """The smallest final feature map the model's head accepts (VGG's fc1 needs 7 x 7)."""
    from timm.models.vgg import ConvMlp

    from fcnx_timm import VGG_FC1

    return VGG_FC1 if isinstance(getattr(model, "pre_logits", None), ConvMlp) else 1


def _spatial_parts(model: Any, pool: int) -> tuple[Any, Any, int]:
    """``(features, head, pool)`` of the FCN: what runs on the whole map, what runs per window, its pool side."""
    from timm.models.vgg import ConvMlp

    from fcnx_timm import VGG_FC1

    pre_logits = getattr(model, "pre_logits", None)
    if isinstance(pre_logits, ConvMlp):  # VGG runs fc1/fc2 as 7x7/1x1 convolutions over the feature map
        if pool < VGG_FC1:
            raise ValueError(f"VGG needs a final feature map of at least {VGG_FC1} cells")
        return (lambda x: pre_logits(model.forward_features(x))), model.head, pool - VGG_FC1 + 1
    return model.forward_features, model.forward_head, pool


def convolutionalize(model: Any, pool: int) -> Any:
    """The FCN of a timm classifier whose final feature map has side ``pool`` at the kernel size."""
    from fcnx.plugin import FoldedFCN

    features, head, pool = _spatial_parts(model, pool)
    return FoldedFCN(model, features, head, pool, global_pool_kind(model))


def _feature_side(model: Any, w: int) -> int:
    import torch

    with torch.no_grad():
        return int(model.forward_features(torch.empty(1, 3, w, w, device="meta")).shape[-2])


def _structure_problem(model: Any, size: int) -> str | None:
    """Why the (meta-device) ``model`` is not a CNN with a pooled head, or ``None``."""
    import torch

    fmt = getattr(model, "output_fmt", "NCHW")
    fmt = getattr(fmt, "value", fmt)
    if fmt != "NCHW":
        return f"forward_features gives {fmt} features (a windowed transformer), not an N x C x H x W feature map"
    try:
        with torch.no_grad():
            out = model.forward_features(torch.empty(1, 3, size, size, device="meta"))
    except Exception as exc:
        return f"forward_features fails at its own input size {size} on the meta device ({type(exc).__name__}: {exc})"
    if out.ndim != 4:
        shape = " x ".join(str(s) for s in out.shape)
        return f"forward_features gives {shape} tokens, not an N x C x H x W feature map (a transformer, not a CNN)"
    try:
        global_pool_kind(model)
    except ValueError as exc:
        return str(exc)
    return None


def _exactness(model_name: str, kernel: int, pool: int) -> tuple[float, float]:
    """``(max |FCN - classifier|, max |logit|)`` of a seeded random init on ``2 x 3 x kernel x kernel`` noise."""
    import timm
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = timm.create_model(model_name, pretrained=False, num_classes=PROBE_CLASSES).eval()
        x = torch.randn(2, 3, kernel, kernel)
    fcn = convolutionalize(model, pool).eval()
    with torch.inference_mode():
        expected, got = model(x), fcn(x)
    if tuple(got.shape[-2:]) != (1, 1):
        raise ProbeError(f"its FCN gives {tuple(got.shape[-2:])} cells at the kernel {kernel}, not (1, 1)")
    return float((got[:, :, 0, 0] - expected).abs().max()), float(expected.abs().max())


def _arch(model_name: str) -> str:
    from timm.models import get_arch_name

    return str(get_arch_name(model_name))


def measure(model_name: str) -> dict[str, Any]:
    """The record of ``model_name``'s architecture: formula and exactness, or the reason it has none."""
    import timm
    import torch

    arch = _arch(model_name)
    with torch.device("meta"):  # Any: a timm model, whose pretrained_cfg torch would type as Tensor | Module
        model: Any = timm.create_model(arch, pretrained=False, num_classes=PROBE_CLASSES).eval()
    size = int(model.pretrained_cfg.get("input_size", (3, 224, 224))[-1])
    problem = _structure_problem(model, size)
    if problem is not None:
        return {"error": problem}
    try:
        stride, offset = measure_formula(functools.partial(_feature_side, model))
    except ProbeError as exc:
        return {"error": str(exc)}
    pool = max(EXACT_POOL, min_pool(model))
    kernel = w_min(pool, stride, offset)
    try:
        diff, scale = _exactness(arch, kernel, pool)
    except (ProbeError, RuntimeError, ValueError) as exc:
        return {"error": f"its FCN does not run at the kernel {kernel} ({type(exc).__name__}: {exc})"}
    record: dict[str, Any] = {
        "stride": stride,
        "offset": offset,
        "kernel": kernel,
        "max_abs_diff": diff,
        "scale": scale,
    }
    if not is_exact(diff, scale):
        record["error"] = (
            f"its head does not treat the pooled vector on its own: at the kernel {kernel} the FCN differs "
            f"from the classifier by {diff:.3g} (logits up to {scale:.3g})"
        )
    return record


def record_of(model_name: str) -> dict[str, Any]:
    """The cached record of ``model_name``'s architecture, measured now if there is none."""
    return measured(namespace(), _arch(model_name), lambda: measure(model_name))


def imagenet_tags(model_name: str, with_weights: frozenset[str] | None = None) -> tuple[str, ...]:
    """The model's pretrained tags with ImageNet-1k classes, in timm's order (the model name's own tag first).

    ``with_weights``: ``timm.list_pretrained()``, when the caller asks for many models.
    """
    import timm
    from timm.models import get_arch_pretrained_cfgs

    arch = _arch(model_name)
    if with_weights is None:
        with_weights = frozenset(timm.list_pretrained(f"{arch}.*"))
    tags = [
        tag
        for tag, cfg in get_arch_pretrained_cfgs(arch).items()
        if tag in with_weights and cfg.num_classes == IMAGENET_CLASSES
    ]
    if model_name in tags:
        tags.remove(model_name)
        tags.insert(0, model_name)
    return tuple(tags)


def preprocess_of(cfg: Any) -> Preprocess:
    """fcnx's :class:`Preprocess` of a timm ``pretrained_cfg`` (mean/std in the same units, RGB)."""
    return Preprocess(
        mean=tuple(float(v) for v in cfg.mean),  # type: ignore[arg-type]
        std=tuple(float(v) for v in cfg.std),  # type: ignore[arg-type]
    )


def check_name(model_name: str) -> None:
    """A one-line :class:`UsageError` unless timm knows ``model_name`` (an architecture, optionally ``.tag``)."""
    import timm
    from timm.models import get_pretrained_cfg

    if not timm.is_model(model_name):
        arch = model_name.partition(".")[0]
        known = timm.list_models(f"{arch[:3]}*") or timm.list_models()
        raise UsageError(
            f"unknown timm model {model_name!r}{did_you_mean(arch, known)}; "
            "see 'fcnx list-backbones --all-timm PATTERN'"
        )
    try:
        get_pretrained_cfg(model_name)
    except RuntimeError as exc:
        raise UsageError(f"timm model {model_name!r}: {exc}") from None


def spec_for(model_name: str) -> BackboneSpec:
    """The spec of ``timm/<model_name>``: measured (or cached) geometry, timm's preprocessing and tags."""
    from timm.models import get_pretrained_cfg

    from fcnx_timm import PREFIX, timm_spec

    check_name(model_name)
    record = record_of(model_name)
    if "error" in record:
        raise UsageError(f"timm model {model_name!r} cannot be convolutionalized: {record['error']}")
    tags = imagenet_tags(model_name)
    cfg = get_pretrained_cfg(tags[0] if tags else model_name)
    if cfg is None:
        raise UsageError(f"timm model {model_name!r} has no pretrained config (input size, mean and std)")
    stride, offset = int(record["stride"]), int(record["offset"])
    return timm_spec(
        name=PREFIX + model_name,
        arch=model_name,
        stride=stride,
        offset=offset,
        size=int(cfg.input_size[-1]),
        preprocess=preprocess_of(cfg),
        padding="same" if offset <= 0 else "valid",
        tags=tags,
        description=f"timm {model_name} (measured {formula_text(stride, offset)}; FCN = classifier "
        f"to {record['max_abs_diff'] / max(1.0, record['scale']):.0e} at {record['kernel']})",
    )


def candidates(pattern: str) -> list[str]:
    """timm's model names matching ``pattern`` (as ``timm.list_models``)."""
    import timm

    return list(timm.list_models(pattern))


def candidate_records(pattern: str) -> list[dict[str, Any]]:
    """timm's models matching ``pattern`` (as ``timm.list_models``) as ``timm/<name>`` rows.

    Each row has the name, timm's input size, the ImageNet-1k tags, and what is known without
    measuring: the cached formula, or why the model was refused, or ``status`` "not measured yet".
    """
    import timm
    from timm.models import get_pretrained_cfg

    from fcnx_timm import PREFIX

    with_weights = frozenset(timm.list_pretrained())
    rows = []
    for name in candidates(pattern):
        record = cached_record(namespace(), _arch(name))
        cfg = get_pretrained_cfg(name)
        formula = None
        if record is None:
            status = "not measured yet"
        elif "error" in record:
            status = f"cannot be convolutionalized: {record['error']}"
        else:
            formula, status = formula_text(record["stride"], record["offset"]), "ok"
        rows.append(
            {
                "name": PREFIX + name,
                "default_size": int(cfg.input_size[-1]) if cfg is not None else None,
                "pretrained": list(imagenet_tags(name, with_weights)),
                "formula": formula,
                "status": status,
            }
        )
    return rows
