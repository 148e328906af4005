"""Fine-tuning a backbone on a labelled dataset, step by step, resumable, on one or many devices.

A run lives in one folder:

- ``best.safetensors``: the fcnx checkpoint with the best validation top-1 so far (the result:
  ``fcnx crop --weights NET=OUT/best.safetensors``);
- ``resume.safetensors``: the current weights, the optimizer's tensors and, in its metadata, the
  configuration and progress (JSON), written atomically after every epoch, last, so ``--resume``
  loses at most the epoch that was running (a kill at any moment leaves it whole);
- ``README.md``: the model card of ``best.safetensors`` (:mod:`fcnx.training.card`), rewritten with it;
- ``metrics.csv`` and ``training.png``: loss and accuracy per epoch;
- ``skipped.txt``: the images left out, one error line each (files a meta list names that are
  missing, files the loader cannot read), when there are any.

A bad image never stops a run: it is skipped (in every epoch) and counted, and its one-line
error is reported once.

Every epoch is seeded from ``(seed, epoch, rank)`` and the shuffling from ``(seed, epoch)``, so a
resumed run repeats exactly what the uninterrupted run would have done. Validation squashes whole
images to the training size with the resize of ``fcnx evaluate`` (:class:`fcnx.training.datasets.EvalResize`),
so its top-1 is the number ``fcnx evaluate`` reports on the same images.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from fcnx.backbones import checkpoint
from fcnx.backbones.registry import get_backbone
from fcnx.errors import FcnxError, UsageError, one_line
from fcnx.io import datasets as listing
from fcnx.io import decoding
from fcnx.io.processes import worker_init
from fcnx.method.metrics import top_k_accuracy
from fcnx.training import card, datasets, distributed, finetune
from fcnx.training.config import LOADER_WORKERS, TrainConfig

BEST = "best.safetensors"
RESUME = "resume.safetensors"
METRICS = "metrics.csv"
PLOT = "training.png"
SKIPPED = "skipped.txt"
#: the files a run writes into its folder: a new run refuses a folder holding one (:func:`refuse_taken`)
OUTPUTS = (BEST, RESUME, METRICS, PLOT, SKIPPED, card.CARD)
COLUMNS = [
    "epoch",
    "step",
    "step_name",
    "step_epoch",
    "trainable",
    "lr",
    "train_loss",
    "train_top1",
    "val_loss",
    "val_top1",
    "val_top5",
    "best",
    "unreadable",
    "seconds",
]


def refuse_taken(folder: Path) -> None:
    """A one-line :class:`UsageError` when ``folder`` holds a file of :data:`OUTPUTS` (the user's, or another
    run's) that a new run would replace."""
    taken = [name for name in OUTPUTS if os.path.lexists(folder / name)]
    if taken:
        raise UsageError(
            f"already holds {', '.join(taken)}, which a new run would replace: move them or choose another folder",
            folder,
        )


@dataclass
class Progress:
    """Where a run stands; saved in ``resume.safetensors`` after every epoch."""

    step: int = 0
    step_epoch: int = 0
    epoch: int = 0
    best_top1: float = -1.0
    since_best: int = 0
    finished: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    validation: str = ""  # digest of the validation images, to notice a changed dataset on resume
    unreadable: dict[str, str] = field(default_factory=dict)  # image the loader could not read -> its error


@dataclass
class TrainResult:
    """What :func:`train` leaves behind."""

    outdir: Path
    best: Path
    best_top1: float | None
    history: list[dict[str, Any]]
    steps: list[finetune.Step]
    unreadable: int
    missing: int
    #: one error line per image left out (missing, then unreadable)
    skipped: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- saving and loading state


def _optimizer_state(optimizer: torch.optim.Optimizer | None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An optimizer's state dict split into tensors (for safetensors) and everything else (for JSON)."""
    if optimizer is None:
        return {}, {}
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{key}"] = value
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _restore_optimizer(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], saved: dict[str, Any]
) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    for name, value in saved.get("scalars", {}).items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": saved["param_groups"]})


def _meta(
    config: TrainConfig, classes: list[str], carried: dict[str, Any], **training: Any
) -> checkpoint.CheckpointMeta:
    return checkpoint.CheckpointMeta(
        arch=get_backbone(config.net).name,
        classes=list(classes),
        input_size=config.size,
        head=list(config.head),
        extra={**carried, "training": training},
    )


def _digest(items: list[Any]) -> str:
    return hashlib.sha256("\n".join(str(item.rel) for item in items).encode()).hexdigest()[:16]


def read_resume(outdir: Path) -> tuple[TrainConfig, Progress, dict[str, Any]]:
    """Configuration, progress and saved extras of the run in ``outdir``."""
    path = outdir / RESUME
    meta = checkpoint.read_meta(path)
    if meta is None or "resume" not in meta.extra:
        raise UsageError("not a training state written by fcnx train", path)
    saved = meta.extra["resume"]
    try:
        return TrainConfig.from_dict(saved["config"]), Progress(**saved["progress"]), saved
    except (KeyError, TypeError, AttributeError) as exc:  # a hand-edited state: its fields missing, of other types
        raise UsageError(f"not a training state written by fcnx train ({type(exc).__name__}: {exc})", path) from None


def write_metrics(outdir: Path, history: list[dict[str, Any]]) -> None:
    """``metrics.csv`` and ``training.png`` from the run's history (rewritten whole, atomically)."""
    from fcnx.io.files import atomic_text
    from fcnx.render.plots import plot_history

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(history)
    atomic_text(outdir / METRICS, buffer.getvalue())
    plot_history(history, outdir / PLOT)


# --------------------------------------------------------------------------- one epoch


class _Normalize:
    """Pixels in ``[0, 255]`` to the backbone's input convention, on the device (as :class:`fcnx.engine.fcn.FCN` does)."""

    def __init__(self, preprocess: Any, device: torch.device) -> None:
        order = [2, 1, 0] if preprocess.channel_order == "BGR" else [0, 1, 2]
        mean = torch.tensor(preprocess.mean, dtype=torch.float32) * 255.0
        std = torch.tensor(preprocess.std, dtype=torch.float32) * 255.0
        self.order = order
        self.scale = (1.0 / std)[order].view(1, 3, 1, 1).to(device)
        self.shift = (-mean / std)[order].view(1, 3, 1, 1).to(device)

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.order != [0, 1, 2]:
            pixels = pixels[:, self.order]
        return pixels * self.scale + self.shift


def _seed_epoch(seed: int, epoch: int, rank: int) -> None:
    value = (seed * 1_000_003 + epoch * 7_919 + rank) % (2**31)
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)


def _autocast(device: torch.device, amp: bool) -> tuple[Any, torch.amp.GradScaler]:
    """The autocast context factory and grad scaler for ``device`` (mixed precision on CUDA only)."""
    enabled = amp and device.type == "cuda"
    dtype = torch.bfloat16 if enabled and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=enabled and dtype == torch.float16)
    return (lambda: torch.autocast(device.type, dtype=dtype, enabled=enabled)), scaler


def _train_epoch(
    net: Any,
    model: torch.nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    normalize: _Normalize,
    autocast: Callable[[], Any],
    scaler: torch.amp.GradScaler,
    ctx: distributed.Context,
    bar: Any,
    bad: list[int],
) -> tuple[float, float, int]:
    """One pass over the training shard; returns summed (loss, correct, seen) and the unreadable count.

    The dataset indices of this shard's unreadable images are appended to ``bad``.
    """
    finetune.train_mode(model)
    sums = torch.zeros(3, dtype=torch.float64, device=ctx.device)  # loss, correct, seen
    unreadable = 0
    for batch, (pixels, labels, index) in enumerate(loader):
        keep = labels >= 0
        unreadable += int((~keep).sum())
        bad += index[~keep].tolist()
        pixels = normalize(pixels.to(ctx.device, non_blocking=True))
        labels = labels.to(ctx.device, non_blocking=True)
        keep = keep.to(ctx.device)
        with autocast():
            logits = net(pixels)
        losses = F.cross_entropy(logits.float(), labels.clamp(min=0), reduction="none") * keep
        loss = losses.sum() / keep.sum().clamp(min=1)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        sums += torch.stack([losses.detach().sum(), ((logits.argmax(1) == labels) & keep).sum(), keep.sum()]).double()
        bar.update(1)
        if not bar.disable and (batch % 10 == 0 or batch == len(loader) - 1):
            loss_sum, correct, seen = sums.tolist()
            bar.set_postfix(loss=f"{loss_sum / max(seen, 1):.3f}", acc=f"{correct / max(seen, 1):.1%}", refresh=False)
    loss_sum, correct, seen = sums.tolist()
    total_loss, total_correct, total_seen, total_bad = distributed.sum_all([loss_sum, correct, seen, unreadable], ctx)
    return (total_loss / max(total_seen, 1), total_correct / max(total_seen, 1), int(total_bad))


@torch.inference_mode()
def _validate(
    model: torch.nn.Module,
    loader: DataLoader,
    normalize: _Normalize,
    autocast: Callable[[], Any],
    ctx: distributed.Context,
    bad: list[int],
) -> tuple[float, float, float, int]:
    """Loss, top-1 and top-5 over the validation images (this shard's, summed over processes), and unreadable ones
    (their dataset indices appended to ``bad``)."""
    model.eval()
    loss_sum = top1 = top5 = seen = unreadable = 0.0
    for pixels, labels, index in loader:
        keep = labels >= 0
        unreadable += int((~keep).sum())
        bad += index[~keep].tolist()
        if not keep.any():
            continue
        pixels, labels = pixels[keep], labels[keep]
        with autocast():
            logits = model(normalize(pixels.to(ctx.device))).float()
        loss_sum += float(F.cross_entropy(logits, labels.to(ctx.device), reduction="sum"))
        probs = logits.softmax(1).cpu().numpy()
        top1 += round(top_k_accuracy(probs, labels.numpy(), 1) * len(labels))
        top5 += round(top_k_accuracy(probs, labels.numpy(), min(5, probs.shape[1])) * len(labels))
        seen += len(labels)
    loss_sum, top1, top5, seen, unreadable = distributed.sum_all([loss_sum, top1, top5, seen, unreadable], ctx)
    n = max(seen, 1)
    return loss_sum / n, top1 / n, top5 / n, int(unreadable)


# --------------------------------------------------------------------------- the run


def _check_resume(
    config: TrainConfig, classes: list[str], saved: dict[str, Any], digest: str, progress: Progress, outdir: Path
) -> None:
    before = asdict(TrainConfig.from_dict(saved["config"]))  # settings a run predates have their defaults
    changed = [k for k, v in asdict(config).items() if before[k] != v]
    if changed:
        raise UsageError(
            f"--resume continues the saved run as it was configured; {changed[0]} differs "
            f"(saved {before[changed[0]]!r}, given {asdict(config)[changed[0]]!r})",
            outdir / RESUME,
        )
    if saved.get("classes") != classes:
        raise UsageError(
            f"the dataset's classes differ from those of the run being resumed "
            f"({len(classes)} vs {len(saved.get('classes', []))})",
            outdir / RESUME,
        )
    if progress.validation and progress.validation != digest:
        raise UsageError(
            "the dataset's images changed since the run started (another validation split)", outdir / RESUME
        )


@dataclass
class Split:
    """The images of a run: the dataset, the training and validation items, and (``--crops``) each item's box."""

    data: listing.LabelledImages
    train: list[Any]
    validation: list[Any]
    boxes: dict[Path, Any] | None = None

    def cutter(self, items: list[Any], config: TrainConfig) -> Any:
        """The :class:`~fcnx.training.transforms.BoxCutter` of ``items`` (``None`` without ``--crops``)."""
        from fcnx.training.transforms import BoxCutter

        if self.boxes is None:
            return None
        scale = (1 - config.crop_scale, 1 + config.crop_scale)
        return BoxCutter([self.boxes[item.path] for item in items], config.crop_jitter, scale)


def split(config: TrainConfig) -> Split:
    """The dataset of ``config`` and its seeded holdout; with ``--crops``, among the images that have a box
    (the others are left out as missing, each with its line); for a fold model, without its fold's images."""
    data = listing.open_dataset(config.data, config.split)
    boxes = None
    if config.crops:
        from fcnx.jobs.scoring import read_boxes
        from fcnx.training.transforms import boxes_of

        path = Path(config.crops)
        index = read_boxes(path)
        data.warnings += index.warnings
        kept, found, without = boxes_of(data.items, index)
        if not kept:
            raise UsageError(f"no image of the {config.split} split of {data.root} has a box here (wrong file?)", path)
        data.items = kept
        data.missing += [item.path for item in without]
        data.missing_lines += [
            f"{item.path}: no box in {path} (its crop failed, or another split was cropped)" for item in without
        ]
        boxes = {item.path: box for item, box in zip(kept, found)}
    if config.fold:  # a fold model: every image outside its fold
        from fcnx.io.folds import assign_folds

        dealt = assign_folds(data.items, config.folds, config.seed)
        data.items = [item for item, fold in zip(data.items, dealt) if fold != config.fold]
    train_items, val_items = listing.holdout(data.items, config.val_fraction, config.seed)
    return Split(data, train_items, val_items, boxes)


def _unreadable(path: Path, cutter: Any = None, k: int = 0) -> str:
    """The one-line error of an image the data loader could not read, or cut to its box with ``cutter`` (item ``k``'s),
    found again here: loader processes keep none."""
    try:
        pixels, full = decoding.load_rgb(path)
        if cutter is not None:
            cutter(k, pixels, full, False)
    except FcnxError as exc:
        return str(exc) if exc.path is not None else str(FcnxError(str(exc), path))
    return str(FcnxError("could not be read during training", path))


@dataclass
class _Loaders:
    """The datasets and loaders of a run (this process's shard)."""

    train_set: datasets.ImageDataset
    val_set: datasets.ImageDataset
    sampler: DistributedSampler[int]
    train: DataLoader
    val: DataLoader


def _loaders(images: Split, config: TrainConfig, ctx: distributed.Context, workers: int) -> _Loaders:
    """The training set (augmented, sharded by a seeded sampler) and the validation set (this rank's share)."""
    train_set = datasets.ImageDataset(
        images.train,
        images.data.classes,
        config.size,
        train=True,
        augment=config.augment,
        cut=images.cutter(images.train, config),
    )
    val_set = datasets.ImageDataset(
        images.validation,
        images.data.classes,
        config.size,
        train=False,
        cut=images.cutter(images.validation, config),
    )
    # torch types datasets nominally; ImageDataset is a map-style dataset by its __len__ and __getitem__
    train_data = cast("Dataset[tuple[Any, int, int]]", train_set)
    val_data = cast("Dataset[tuple[Any, int, int]]", val_set)
    sampler: DistributedSampler[int] = DistributedSampler(
        train_data, num_replicas=ctx.world, rank=ctx.rank, shuffle=True, seed=config.seed
    )
    shard = len(sampler)
    pin = ctx.device.type == "cuda"
    train_loader = DataLoader(
        train_data,
        batch_size=config.batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=pin,
        worker_init_fn=worker_init(),
        drop_last=shard > config.batch_size,
    )
    val_loader = DataLoader(
        torch.utils.data.Subset(val_data, range(ctx.rank, len(val_set), ctx.world)),
        batch_size=config.batch_size,
        num_workers=workers,
        pin_memory=pin,
        worker_init_fn=worker_init(),
    )
    return _Loaders(train_set, val_set, sampler, train_loader, val_loader)


@dataclass
class _Run:
    """What the stages of :func:`train` share: the settings, the data, the model and where the run stands."""

    config: TrainConfig
    outdir: Path
    ctx: distributed.Context
    spec: Any
    schedule: str
    images: Split
    progress: Progress
    saved: dict[str, Any]
    model: torch.nn.Module
    carried: dict[str, Any]
    steps: list[finetune.Step]
    best_state: dict[str, torch.Tensor] | None
    resume_tensors: dict[str, torch.Tensor]
    loaders: _Loaders
    normalize: _Normalize
    autocast: Callable[[], Any]
    scaler: torch.amp.GradScaler
    log: Callable[[str], None]
    report: Callable[[str], None]
    missing: list[str]
    unreadable_total: int = 0

    def meta(self, **epoch: Any) -> checkpoint.CheckpointMeta:
        """The checkpoint metadata of this run (``epoch``: the best epoch's numbers)."""
        info = {
            "schedule": self.schedule,
            "weights": self.config.weights,
            "data": str(self.config.data),
            "processes": self.ctx.world,
        }
        return _meta(self.config, self.images.data.classes, self.carried, **info, **epoch)

    def result(self) -> TrainResult:
        best = self.progress.best_top1 if self.images.validation else None
        return TrainResult(
            self.outdir,
            self.outdir / BEST,
            best,
            self.progress.history,
            self.steps,
            self.unreadable_total,
            len(self.images.data.missing),
            self.missing + list(self.progress.unreadable.values()),
        )


def _start(
    config: TrainConfig,
    outdir: Path,
    ctx: distributed.Context,
    workers: int,
    resume: bool,
    log: Callable[[str], None],
    report: Callable[[str], None],
) -> _Run:
    """Open the dataset, check a resumed run against it, build the model and the loaders."""
    from fcnx.io.files import remove_temporaries

    spec = get_backbone(config.net)
    schedule = finetune.resolve_schedule(config.schedule, spec)
    images = split(config)
    data = images.data
    digest = _digest(images.validation)
    progress = Progress(validation=digest)
    saved: dict[str, Any] = {}
    if resume:
        _, progress, saved = read_resume(outdir)
        _check_resume(config, data.classes, saved, digest, progress, outdir)
    if ctx.main:
        log(data.describe() + f"; {len(images.train)} for training, {len(images.validation)} for validation")
        for warning in data.warnings:
            log(f"warning: {one_line(warning)}")
    if not images.train:
        raise UsageError(f"no training images left in the {config.split} split", data.root)

    torch.manual_seed(config.seed)  # the new head's initialisation
    model, carried = finetune.initial_model(spec, data.classes, config.head, config.weights)
    steps = finetune.plan_steps(model, schedule, config.blocks_per_step)
    best_state: dict[str, torch.Tensor] | None = None
    resume_tensors: dict[str, torch.Tensor] = {}
    if resume:
        resume_tensors = checkpoint.read_tensors(outdir / RESUME)
        model.load_state_dict({k[len("model.") :]: v for k, v in resume_tensors.items() if k.startswith("model.")})
        if (outdir / BEST).is_file():
            best_state = checkpoint.read_tensors(outdir / BEST)
    model.to(ctx.device)
    if ctx.device.type == "cuda":
        model.to(memory_format=torch.channels_last)

    autocast, scaler = _autocast(ctx.device, config.amp)
    loaders = _loaders(images, config, ctx, workers)
    missing = list(data.missing_lines)  # one line each, naming the meta file and line
    if ctx.main:
        remove_temporaries(outdir)  # what a killed run was writing
        for line in missing:
            report(f"error: {line}")
    normalize = _Normalize(spec.preprocess, ctx.device)
    return _Run(
        config, outdir, ctx, spec, schedule, images, progress, saved, model, carried, steps, best_state,
        resume_tensors, loaders, normalize, autocast, scaler, log, report, missing,
    )  # fmt: skip


def _step_optimizer(run: _Run, lr: float) -> torch.optim.Optimizer:
    """The optimizer of the current step; a resumed run in mid-step gets its saved state back (once)."""
    optimizer = _optimizer(run.model, run.config, lr)
    if run.resume_tensors and run.progress.step_epoch > 0 and run.saved.get("optimizer"):
        _restore_optimizer(optimizer, run.resume_tensors, run.saved["optimizer"])
        if run.saved.get("scaler"):
            run.scaler.load_state_dict(run.saved["scaler"])
    run.resume_tensors = {}
    return optimizer


def _train_step(run: _Run, quiet: bool, on_epoch: Callable[[Progress], None] | None) -> None:
    """The epochs of the current step, until it has run its epochs or lost patience."""
    progress, steps = run.progress, run.steps
    step = steps[progress.step]
    trainable = finetune.apply_step(run.model, step)
    net = distributed.wrap(run.model, run.ctx)
    lr = run.config.step_lr(progress.step)
    optimizer = _step_optimizer(run, lr)
    if run.ctx.main:
        run.log(f"step {progress.step + 1}/{len(steps)}: {step.name} ({trainable:,} trainable parameters, lr {lr:g})")
    step_done = False
    while not step_done:
        row = _epoch(run, net, optimizer, quiet, step, trainable, lr)
        step_done = progress.step_epoch >= run.config.epochs or (
            row["val_top1"] is not None and progress.since_best >= run.config.patience
        )
        if step_done:  # the next step starts from the best weights so far
            assert run.best_state is not None  # an epoch improved, or the resumed run read best.safetensors
            run.model.load_state_dict(run.best_state)
            progress.step, progress.step_epoch, progress.since_best = progress.step + 1, 0, 0
            progress.finished = progress.step >= len(steps)
        if run.ctx.main:
            _write_epoch(run, row, None if step_done else optimizer)
        distributed.barrier(run.ctx)
        if on_epoch is not None:
            on_epoch(progress)
    del net


def _epoch(
    run: _Run, net: Any, optimizer: torch.optim.Optimizer, quiet: bool, step: finetune.Step, trainable: int, lr: float
) -> dict[str, Any]:
    """Train and validate one epoch; note its unreadable images and the best weights; its history row."""
    from tqdm import tqdm

    progress, ctx, loaders = run.progress, run.ctx, run.loaders
    start = time.perf_counter()
    _seed_epoch(run.config.seed, progress.epoch, ctx.rank)
    loaders.sampler.set_epoch(progress.epoch)
    bad_train: list[int] = []
    bad_val: list[int] = []
    with tqdm(
        total=len(loaders.train),
        desc=f"step {progress.step + 1}/{len(run.steps)} epoch {progress.step_epoch + 1}",
        unit="batch",
        leave=False,
        disable=quiet or not ctx.main or not sys.stderr.isatty(),
    ) as bar:
        train_loss, train_top1, bad = _train_epoch(
            net, run.model, loaders.train, optimizer, run.normalize, run.autocast, run.scaler, ctx, bar, bad_train
        )
    val = (
        _validate(run.model, loaders.val, run.normalize, run.autocast, ctx, bad_val) if run.images.validation else None
    )
    bad += val[3] if val else 0
    run.unreadable_total = max(run.unreadable_total, bad)
    _note_unreadable(run, bad_train, bad_val)
    top1 = val[1] if val else train_top1
    improved = val is None or top1 > progress.best_top1
    if improved:
        progress.best_top1, progress.since_best = top1, 0
        run.best_state = {k: v.detach().cpu().clone() for k, v in run.model.state_dict().items()}
    else:
        progress.since_best += 1
    progress.history.append(
        {
            "epoch": progress.epoch + 1,
            "step": progress.step + 1,
            "step_name": step.name,
            "step_epoch": progress.step_epoch + 1,
            "trainable": trainable,
            "lr": lr,
            "train_loss": train_loss,
            "train_top1": train_top1,
            "val_loss": val[0] if val else None,
            "val_top1": val[1] if val else None,
            "val_top5": val[2] if val else None,
            "best": improved,
            "unreadable": bad,
            "seconds": round(time.perf_counter() - start, 3),
        }
    )
    progress.epoch += 1
    progress.step_epoch += 1
    return progress.history[-1]


def _note_unreadable(run: _Run, bad_train: list[int], bad_val: list[int]) -> None:
    """Record (and report, once) each image no process could read this epoch."""
    train_set, val_set, progress = run.loaders.train_set, run.loaders.val_set, run.progress
    where = {str(train_set.items[k].path): (train_set.cut, k) for k in bad_train} | {
        str(val_set.items[k].path): (val_set.cut, k) for k in bad_val
    }
    for path in sorted(set(distributed.gather_all(list(where), run.ctx)) - set(progress.unreadable)):
        progress.unreadable[path] = _unreadable(Path(path), *where.get(path, (None, 0)))
        if run.ctx.main:
            run.report(f"error: {progress.unreadable[path]}")


def _write_epoch(run: _Run, row: dict[str, Any], optimizer: torch.optim.Optimizer | None) -> None:
    """The main process's files after an epoch: the best checkpoint and its card, the metrics, the skipped images,
    and last the resume state (``optimizer``: None at the end of a step)."""
    from fcnx.io.files import atomic_text

    outdir, progress, classes = run.outdir, run.progress, run.images.data.classes
    run.log(_epoch_line(row))
    if row["best"]:
        assert run.best_state is not None  # set by the epoch
        meta = run.meta(epoch=row["epoch"], step=row["step"], val_top1=row["val_top1"])
        checkpoint.save(outdir / BEST, run.best_state, meta)
        atomic_text(outdir / card.CARD, card.model_card(run.spec, classes, run.config, run.schedule, row))
    write_metrics(outdir, progress.history)
    if run.missing or progress.unreadable:
        lines = run.missing + list(progress.unreadable.values())
        atomic_text(outdir / SKIPPED, "".join(f"{line}\n" for line in lines))
    # last: the epoch counts once this is written (a kill before it redoes the epoch, and the
    # files above are rewritten whole from the saved history)
    _save_resume(outdir, run.model, optimizer, run.scaler, run.config, classes, run.carried, progress)


def train(
    config: TrainConfig,
    outdir: str | Path,
    *,
    device: str = "auto",
    workers: int = LOADER_WORKERS,
    resume: bool = False,
    quiet: bool = False,
    log: Callable[[str], None] = print,
    report: Callable[[str], None] | None = None,
    on_epoch: Callable[[Progress], None] | None = None,
) -> TrainResult:
    """Fine-tune ``config.net`` on ``config.data`` into ``outdir`` (see the module docstring).

    ``report(line)`` receives the error of each image left out, once (default: ``log``).
    ``on_epoch(progress)`` is called after each epoch's files are written (e.g. to stop a run).
    Under ``torchrun`` every process calls this; only rank 0 writes files and logs.
    """
    ctx = distributed.context(device)
    run = _start(config, Path(outdir), ctx, workers, resume, log, report or log)
    try:
        while not run.progress.finished and run.progress.step < len(run.steps):
            _train_step(run, quiet, on_epoch)
    finally:
        distributed.finish(ctx)
    return run.result()


def _optimizer(model: torch.nn.Module, config: TrainConfig, lr: float) -> torch.optim.Optimizer:
    """timm's optimizer factory over the trainable parameters (no weight decay on biases and norms)."""
    from timm.optim import create_optimizer_v2

    try:
        return create_optimizer_v2(model, opt=config.opt, lr=lr, weight_decay=config.weight_decay)
    except (AssertionError, ValueError) as exc:
        raise UsageError(f"unknown optimizer {config.opt!r} ({exc}); e.g. adamw, sgd, momentum, rmsprop") from None


def _save_resume(
    outdir: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    scaler: torch.amp.GradScaler,
    config: TrainConfig,
    classes: list[str],
    carried: dict[str, Any],
    progress: Progress,
) -> None:
    optim_tensors, optim_rest = _optimizer_state(optimizer)
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()} | optim_tensors
    meta = _meta(config, classes, carried)
    meta.extra["resume"] = {
        "config": asdict(config),
        "progress": asdict(progress),
        "classes": list(classes),
        "optimizer": optim_rest,
        "scaler": scaler.state_dict() if scaler.is_enabled() else None,
    }
    checkpoint.save(outdir / RESUME, tensors, meta)


def _epoch_line(row: dict[str, Any]) -> str:
    text = (
        f"epoch {row['epoch']} (step {row['step']}, {row['step_epoch']}): train loss {row['train_loss']:.4f} "
        f"top-1 {row['train_top1']:.1%}"
    )
    if row["val_top1"] is not None:
        text += f" | validation loss {row['val_loss']:.4f} top-1 {row['val_top1']:.1%} top-5 {row['val_top5']:.1%}"
    return text + (" *" if row["best"] else "")
