"""The settings of a training run, declared once: :class:`TrainConfig` (no framework here, so the CLI
builds ``fcnx train``'s options from it before torch is loaded)."""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from fcnx.errors import UsageError
from fcnx.method.geometry import DEFAULT_KERNEL

#: data-loading processes of a run (``fcnx train --workers``): how a run goes, not what it trains, so not a setting
LOADER_WORKERS = 4


@dataclass
class TrainConfig:
    """What a run trains and how; saved with the run, so ``--resume`` repeats it exactly."""

    net: str
    data: str
    split: str = "train"
    #: the training input side: the ensemble's common kernel
    size: int = DEFAULT_KERNEL
    weights: str = "pretrained"
    head: list[int] = field(default_factory=list)
    schedule: str = "auto"
    blocks_per_step: int = 1
    epochs: int = 10
    patience: int = 3
    batch_size: int = 32
    lr: float = 1e-3
    finetune_lr: float | None = None
    weight_decay: float = 1e-4
    opt: str = "adamw"
    val_fraction: float = 0.1
    seed: int = 0
    augment: bool = True
    amp: bool = True
    #: a ``boxes.jsonl``: train and validate on each image's box (``fcnx train --crops``)
    crops: str | None = None
    #: training crops: centre moved by up to this share of the box's sides ...
    crop_jitter: float = 0.0
    #: ... and sides scaled by a factor drawn from ``[1 - crop_scale, 1 + crop_scale]``
    crop_scale: float = 0.0
    #: ``fcnx train --folds K``: the split dealt into this many folds (:func:`fcnx.io.folds.assign_folds`) ...
    folds: int = 0
    #: ... and the one this run leaves out (1 to ``folds``; 0: none)
    fold: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def step_lr(self, index: int) -> float:
        """The first step (the new head, or everything for ``all``) learns at ``lr``, later ones at
        ``finetune_lr`` (default ``lr / 10``)."""
        if index == 0:
            return self.lr
        return self.finetune_lr if self.finetune_lr is not None else self.lr / 10


def default(name: str) -> Any:
    """The default of setting ``name`` (``None`` for the required ``net`` and ``data``)."""
    spec = next(f for f in fields(TrainConfig) if f.name == name)
    if spec.default is not MISSING:
        return spec.default
    return spec.default_factory() if spec.default_factory is not MISSING else None


def refuse_changed(saved: dict[str, Any], given: dict[str, Any], what: str) -> None:
    """``--resume`` keeps ``what``'s saved settings (e.g. "the ensemble with its"): refuse a setting ``given`` on the
    command line with another value, naming its option."""
    changed = sorted(name for name, value in given.items() if saved.get(name) != value)
    if changed:
        name = changed[0]
        raise UsageError(
            f"--resume continues {what} saved settings; --{name.replace('_', '-')} "
            f"was {saved.get(name)!r}, not {given[name]!r}"
        )
