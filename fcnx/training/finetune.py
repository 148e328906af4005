"""Transfer learning surgery: the starting model, its new head, its blocks, and what each step trains.

A model's *head* is the module its ``get_classifier()`` returns (timm's convention; models without
it: their last ``nn.Linear``). Its *blocks*, bottom to top, are timm's parameter groups
(``model.group_matcher()``: stem, then e.g. Inception-v3's ``Mixed_5b`` ... ``Mixed_7c``); models
without a group matcher are split by top-level child module. Schedules (the paper, section II):

- ``two-pass`` (VGG): the new head alone, then every layer;
- ``blockwise`` (Inception, Xception): the head, then one more block from the top per step
  (``blocks_per_step``), until every layer trains;
- ``all``: every layer from the start.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fcnx.backbones import checkpoint
from fcnx.backbones.spec import BackboneSpec
from fcnx.errors import FcnxError, UsageError, WeightsError

SCHEDULES = ("auto", "two-pass", "blockwise", "all")


@dataclass(frozen=True)
class Step:
    """One training step: a name for people and the parameter names it trains."""

    name: str
    trainable: frozenset[str]


def resolve_schedule(schedule: str, spec: BackboneSpec) -> str:
    """``auto`` is the paper's choice: ``two-pass`` for VGG, ``blockwise`` for everything else."""
    if schedule not in SCHEDULES:
        raise UsageError(f"unknown schedule {schedule!r}; use one of {', '.join(SCHEDULES)}")
    if schedule != "auto":
        return schedule
    return "two-pass" if spec.name.startswith("vgg") else "blockwise"


# --------------------------------------------------------------------------- the head


def head_path(model: nn.Module) -> str:
    """Dotted path of the model's classifier module (``get_classifier()``, else its last ``nn.Linear``)."""
    get_classifier = getattr(model, "get_classifier", None)
    head = get_classifier() if callable(get_classifier) else None
    found = None
    for name, module in model.named_modules():
        if (head is not None and module is head) or (head is None and isinstance(module, nn.Linear)):
            found = name
    if not found:
        raise UsageError(f"cannot find the classifier of {type(model).__name__}: give it a get_classifier() method")
    return found


def _module_at(model: nn.Module, path: str) -> tuple[nn.Module, str]:
    *parents, last = path.split(".")
    owner = model
    for part in parents:
        owner = getattr(owner, part)
    return owner, last


def transplant_head(model: nn.Module, donor: nn.Module) -> nn.Module:
    """Put ``donor``'s classifier module in place of ``model``'s (same backbone, another class count or head).

    The donor is a fresh ``spec.build(classes, head)``, so the result has exactly the tensors that
    :func:`fcnx.engine.fcn.load_fcn` will rebuild from the checkpoint's metadata.
    """
    owner, last = _module_at(model, head_path(model))
    donor_owner, donor_last = _module_at(donor, head_path(donor))
    setattr(owner, last, getattr(donor_owner, donor_last))
    if hasattr(model, "num_classes") and hasattr(donor, "num_classes"):
        model.num_classes = donor.num_classes
    return model


def init_head(model: nn.Module) -> nn.Module:
    """Initialise the classifier as Keras initialises a new Dense head: Glorot-uniform weights, zero biases.

    Plugins' defaults vary (timm's EfficientNet scales by the *output* width, which for a few
    classes makes the first losses several times ln(classes)); the paper's nets were Keras models.
    Batch-norm layers of a dense head restart at identity.
    """
    owner, last = _module_at(model, head_path(model))
    for module in getattr(owner, last).modules():
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_parameters()
    return model


def head_names(model: nn.Module) -> set[str]:
    """Names of the head's parameters."""
    prefix = head_path(model) + "."
    return {name for name, _ in model.named_parameters() if name.startswith(prefix)}


# --------------------------------------------------------------------------- the starting model


def initial_model(
    spec: BackboneSpec, classes: Sequence[str], head: Sequence[int], weights: str
) -> tuple[nn.Module, dict[str, Any]]:
    """The model to fine-tune, with a head for ``classes``, and extra checkpoint metadata to carry on.

    ``weights`` is ``pretrained`` (or one of the backbone's hub tags: ImageNet weights), ``none``
    (random initialisation) or a weight file: an fcnx checkpoint of the same backbone (with the same
    classes and head it continues as is, otherwise its head is replaced) or a plain state dict
    (every tensor outside the head must fit; the head is new). A new head is initialised by :func:`init_head`.
    """
    model, carried, new_head = _initial_model(spec, list(classes), tuple(head), weights)
    return (init_head(model) if new_head else model), carried


def _initial_model(
    spec: BackboneSpec, classes: list[str], head: tuple[int, ...], weights: str
) -> tuple[nn.Module, dict[str, Any], bool]:
    if spec.framework != "pytorch":
        raise UsageError(
            f"fcnx train trains PyTorch backbones; {spec.name!r} is {spec.framework} "
            f"(convert its weights with 'fcnx convert' and train the PyTorch twin)"
        )
    n = len(classes)
    if weights == "none":
        return spec.build(n, head, None), {}, True
    if weights == "pretrained" or weights in spec.pretrained:
        if not spec.pretrained:
            raise UsageError(
                f"backbone {spec.name!r} has no pretrained weights: give a weight file with "
                f"--weights FILE, or train from a random start with --weights none"
            )
        tag = spec.pretrained[0] if weights == "pretrained" else weights
        shipped = spec.shipped_weights(tag) if spec.shipped_weights is not None else None
        if shipped is not None:  # a checkpoint the plugin ships for the tag (fcnx-tiny's), as fcnx crop loads it
            return _from_file(spec, classes, head, shipped)
        try:
            return spec.build(n, head, tag), {}, True
        except FcnxError as exc:
            raise FcnxError(
                f"cannot load the ImageNet weights {tag!r} of {spec.name} (no network access?): give a "
                f"weight file with --weights FILE (e.g. the hub's model.safetensors), or train from a "
                f"random start with --weights none"
            ) from exc
    if weights.startswith("hf-hub:"):  # a Hugging Face Hub repository: its checkpoint, via huggingface_hub's cache
        from fcnx.engine.fcn import hub_file

        return _from_file(spec, classes, head, hub_file(weights))
    return _from_file(spec, classes, head, Path(weights))


def _from_file(
    spec: BackboneSpec, classes: list[str], head: tuple[int, ...], path: Path
) -> tuple[nn.Module, dict[str, Any], bool]:
    meta = checkpoint.read_meta(path)
    if meta is None:
        model = spec.build(len(classes), head, None)
        load_body(model, checkpoint.read_tensors(path), path)
        return model, {}, True
    if meta.arch != spec.name:
        raise WeightsError(f"checkpoint is for backbone {meta.arch!r}, not {spec.name!r}", path)
    model = spec.build(len(meta.classes), tuple(meta.head), None)
    spec.load_weights(model, path)  # the plugin's own strict loading (and e.g. Keras pooling)
    new_head = meta.classes != classes or tuple(meta.head) != head
    if new_head:
        target = spec.build(len(classes), head, None)
        transplant_head(model, target)
        if set(model.state_dict()) != set(target.state_dict()):
            raise WeightsError(
                f"cannot give this {spec.name} checkpoint a new head: its tensors differ from "
                f"those of a fresh {spec.name} beyond the classifier",
                path,
            )
    carried = {k: v for k, v in meta.extra.items() if k == "pooling"}
    return model, carried, new_head


def load_body(model: nn.Module, tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Load every tensor outside the head from a plain state dict (without class names the head is always new).

    A tensor the body needs that is missing or misshapen, or a tensor of the file that belongs
    neither to the body nor to a head, is a :class:`~fcnx.errors.WeightsError`.
    """
    prefix = head_path(model) + "."
    own = model.state_dict()
    body = [k for k in own if not k.startswith(prefix)]
    problems = [f"missing tensor {k!r}" for k in body if k not in tensors]
    problems += [
        f"tensor {k!r} has shape {tuple(tensors[k].shape)}, not {tuple(own[k].shape)}"
        for k in body
        if k in tensors and tensors[k].shape != own[k].shape
    ]
    problems += [f"unexpected tensor {k!r}" for k in tensors if k not in own and not k.startswith(prefix)]
    if problems:
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        raise WeightsError(f"does not fit {type(model).__name__}: {problems[0]}{more}", path)
    model.load_state_dict({k: tensors[k] for k in body}, strict=False)


# --------------------------------------------------------------------------- blocks and steps


def body_blocks(model: nn.Module) -> list[list[str]]:
    """Parameter names of the model's blocks outside the head, bottom to top (see the module docstring)."""
    head = head_names(model)
    group_matcher = getattr(model, "group_matcher", None)
    if callable(group_matcher):
        from timm.models import group_parameters

        # timm's matchers expect their own classifier (Inception-v3's fails on a dense head): ask with a leaf there
        owner, last = _module_at(model, head_path(model))
        original = getattr(owner, last)
        setattr(owner, last, nn.Identity())
        try:
            matcher = group_matcher()
        finally:
            setattr(owner, last, original)
        groups = [list(names) for _, names in sorted(group_parameters(model, matcher).items())]
    else:
        by_child: dict[str, list[str]] = {}
        for name, _ in model.named_parameters():
            by_child.setdefault(name.split(".")[0], []).append(name)
        groups = list(by_child.values())
    blocks = [[n for n in group if n not in head] for group in groups]
    return [block for block in blocks if block]


def _label(block: list[str], others: list[str]) -> str:
    """The block's module: the shortest common dotted prefix of its parameters that no other block shares
    (``Mixed_7c``, ``block11``, ``features.28``), else ``first .. last``."""
    split = [name.split(".")[:-1] for name in block]
    common: list[str] = []
    for parts in zip(*split):
        if len(set(parts)) > 1:
            break
        common.append(parts[0])
    while len(common) > 1 and not any(o.startswith(".".join(common[:-1]) + ".") for o in others):
        common.pop()
    if common:
        return ".".join(common)
    first, last = block[0].split(".")[0], block[-1].split(".")[0]
    return first if first == last else f"{first} .. {last}"


def plan_steps(model: nn.Module, schedule: str, blocks_per_step: int = 1) -> list[Step]:
    """The training steps of ``schedule`` (``two-pass``, ``blockwise`` or ``all``) for ``model``."""
    everything = frozenset(name for name, _ in model.named_parameters())
    if schedule == "all":
        return [Step("all layers", everything)]
    head = frozenset(head_names(model))
    first = Step("head", head)
    if schedule == "two-pass":
        return [first, Step("all layers", everything)]
    if schedule != "blockwise":
        raise UsageError(f"unknown schedule {schedule!r}")
    if blocks_per_step < 1:
        raise UsageError("must be at least 1", parameter="blocks_per_step")
    steps, trainable = [first], set(head)
    blocks = body_blocks(model)[::-1]
    names = [name for block in blocks for name in block]

    def label(block: list[str]) -> str:
        members = set(block)
        return _label(block, [n for n in names if n not in members])

    for start in range(0, len(blocks), blocks_per_step):
        chunk = blocks[start : start + blocks_per_step]
        for block in chunk:
            trainable.update(block)
        text = label(chunk[-1])  # the lowest block trained so far
        steps.append(Step(f"head + down to {text}", frozenset(trainable)))
    return steps


def apply_step(model: nn.Module, step: Step) -> int:
    """Make exactly the step's parameters trainable; returns how many scalars train."""
    count = 0
    for name, param in model.named_parameters():
        param.requires_grad_(name in step.trainable)
        count += param.numel() if name in step.trainable else 0
    return count


def train_mode(model: nn.Module) -> nn.Module:
    """``model.train()``, but batch-norm layers whose parameters are all frozen stay in eval mode.

    Frozen layers keep their ImageNet statistics instead of drifting to the batches' (as in Keras,
    where a non-trainable BatchNormalization layer runs in inference mode).
    """
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                module.eval()
    return model
