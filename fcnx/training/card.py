"""The model card (``README.md``) ``fcnx train`` writes beside ``best.safetensors``, as the Hugging Face Hub shows it.

It says what the checkpoint is for fcnx (backbone, classes, kernel, receptive-size formula, the
FCN's pool at the kernel, preprocessing), how it was trained and how well (validation metrics of
the saved epoch), and how to use it, from the run folder or once uploaded to a Hub repository
(``--weights NET=hf-hub:user/repo``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fcnx.backbones.spec import BackboneSpec

CARD = "README.md"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"


def model_card(spec: BackboneSpec, classes: list[str], config: Any, schedule: str, row: dict[str, Any]) -> str:
    """The card of a checkpoint of ``spec`` trained with ``config`` (a :class:`TrainConfig`), saved at epoch ``row``."""
    pre = spec.preprocess
    data = Path(config.data).name
    lines = [
        "---",
        "library_name: fcnx",
        "pipeline_tag: image-classification",
        "tags:",
        "- fcnx",
        "- image-classification",
        "- fully-convolutional",
        f"- {spec.name}",
        "---",
        "",
        f"# {spec.name} fine-tuned on {data} (fcnx)",
        "",
        f"An fcnx checkpoint (`best.safetensors`, safetensors with fcnx metadata): the `{spec.name}` backbone "
        f"({spec.description or spec.framework}) with a new head for {len(classes)} classes, trained at "
        f"{config.size} px by `fcnx train`. fcnx runs it as a fully convolutional network to find and crop "
        "a category anywhere in an image.",
        "",
        "## Use",
        "",
        "```bash",
        f"fcnx crop --nets {spec.name} --weights {spec.name}=hf-hub:USER/REPO --category {classes[0]} photos/ -o crops/",
        f"fcnx crop --nets {spec.name} --weights {spec.name}=best.safetensors photos/ -o crops/   # the local file",
        "```",
        "",
        "## As an FCN",
        "",
        "| | |",
        "|---|---|",
        f"| kernel (training input side) | {config.size} |",
        f"| receptive-size formula | W_min(D) = {spec.formula()} (stride {spec.stride}) |",
        f"| D (pooled cells) at the kernel | {spec.pool_size(config.size)} |",
        f"| preprocessing | {pre.channel_order}, mean {list(pre.mean)}, std {list(pre.std)} |",
        "",
        "## Training",
        "",
        "| | |",
        "|---|---|",
        f"| data | {data} (split {config.split}, {config.val_fraction:g} of each class held out for validation) |",
        f"| starting weights | {config.weights} |",
        f"| head | {', '.join(map(str, config.head)) or 'one dense layer'} |",
        f"| schedule | {schedule} ({config.epochs} epochs at most per step, patience {config.patience}) |",
        f"| optimizer | {config.opt}, lr {config.lr:g}, weight decay {config.weight_decay:g}, batch {config.batch_size} |",
        f"| augmentation | {'timm ImageNet training transform' if config.augment else 'none'} |",
    ]
    if getattr(config, "crops", None):
        lines.append(f"| crops | each image cut to its box ({Path(config.crops).name}) |")
    if getattr(config, "fold", 0):
        lines.append(
            f"| fold | trained without fold {config.fold} of {config.folds} of the split "
            "(`fcnx train --folds`: its images are out of sample for this model) |"
        )
    lines += [
        f"| seed | {config.seed} |",
        "",
        "## Metrics",
        "",
        f"Validation images (held out from the training split), epoch {row['epoch']} (step {row['step']}, "
        f"{row['step_name']}):",
        "",
        "| top-1 | top-5 | loss | train top-1 |",
        "|---|---|---|---|",
        f"| {_percent(row['val_top1'])} | {_percent(row['val_top5'])} | "
        f"{'n/a' if row['val_loss'] is None else format(row['val_loss'], '.4f')} | {_percent(row['train_top1'])} |",
        "",
        "## Classes",
        "",
        "| index | class |",
        "|---|---|",
        *(f"| {k} | {name} |" for k, name in enumerate(classes)),
        "",
    ]
    return "\n".join(lines)
