"""``fcnx train``: fine-tune a backbone on a labelled dataset, as the paper does (section II)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from fcnx.backbones.checkpoint import MAX_INPUT_SIZE
from fcnx.cli.common import FiniteFloatRange, Interrupted, PathType, stoppable
from fcnx.errors import FcnxError, UsageError, one_line
from fcnx.training.config import LOADER_WORKERS, TrainConfig, default, refuse_changed

#: options that are part of the saved configuration (``--resume`` refuses other values for them): every setting of
#: :class:`~fcnx.training.config.TrainConfig` but the fold a fold model leaves out (set by ``--folds``)
CONFIG_OPTIONS = tuple(f.name for f in fields(TrainConfig) if f.name != "fold")
#: the settings whose option's default is not the setting's: the comma-separated ``--head`` (parsed), ``--folds``
#: (none: one model; the setting's 0 means the same)
CLI_DEFAULTS = {"head": "", "folds": None}
TAKEN = "this folder holds a training run already: continue it with --resume, or choose another folder"


def setting(name: str, *decls: str, **kwargs: Any) -> Callable[[Any], Any]:
    """The option of setting ``name`` (``--name``, or ``decls``) with the setting's default, declared in
    :class:`~fcnx.training.config.TrainConfig` only."""
    value = CLI_DEFAULTS.get(name, default(name))
    return click.option(
        *(decls or (f"--{name.replace('_', '-')}",)),
        name,
        default=value,
        show_default=value not in (None, ""),
        **kwargs,
    )


def _parse_head(text: str) -> list[int]:
    try:
        widths = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--head expects comma-separated layer widths such as 1024,512, got {text!r}") from None
    if any(w < 1 for w in widths):
        raise UsageError(f"--head widths must be positive, got {text!r}")
    return widths


@click.command("train")
@setting("net", help="Backbone to fine-tune (see 'fcnx list-backbones'), e.g. inception_v3.")
@click.option(
    "--nets",
    help="Train an ensemble: these backbones (comma-separated) one after another, each in OUTDIR/<net>/ with "
    "the same settings, then OUTDIR/ensemble.json for 'fcnx crop --ensemble'.",
)
@setting(
    "data",
    type=PathType(path_type=Path, file_okay=False),
    help="Dataset root: Food-101 layout (images/, meta/) or class folders (<class>/*.jpg).",
)
@click.option(
    "-o",
    "--output",
    "outdir",
    required=True,
    type=PathType(path_type=Path, file_okay=False),
    help="Run folder: best.safetensors, resume.safetensors, metrics.csv, training.png.",
)
@setting(
    "split",
    type=click.Choice(["train", "test", "all"]),
    help="Split to train on (the validation images are held out from it).",
)
@setting(
    "size",
    type=click.IntRange(min=8, max=MAX_INPUT_SIZE),
    help=f"Training input side: the ensemble's common kernel (the paper trains every net at {default('size')}).",
)
@setting("weights", help="Start from 'pretrained' (ImageNet), a hub tag, 'none' (random) or a weight file.")
@setting("head", help="Hidden dense widths of the new head, e.g. 1024,512 (the paper's InceptionV3).")
@setting(
    "schedule",
    type=click.Choice(["auto", "two-pass", "blockwise", "all"]),
    help="Unfreezing: head then all (two-pass), head then block by block (blockwise), or all at once. "
    "auto: two-pass for VGG, blockwise otherwise.",
)
@setting("blocks_per_step", type=click.IntRange(min=1), help="Blocks unfrozen per blockwise step.")
@setting("epochs", type=click.IntRange(min=1), help="Most epochs per step.")
@setting(
    "patience",
    type=click.IntRange(min=1),
    help="A step ends after this many epochs without a better validation top-1.",
)
@setting("batch_size", type=click.IntRange(min=1), help="Images per batch (per process under torchrun).")
@setting(
    "lr",
    type=FiniteFloatRange(min=0, min_open=True),
    help="Learning rate of the first step (the new head).",
)
@setting(
    "finetune_lr",
    type=FiniteFloatRange(min=0, min_open=True),
    help="Learning rate of the later steps [default: lr / 10].",
)
@setting("weight_decay", type=FiniteFloatRange(min=0))
@setting("opt", help="Optimizer (timm's names: adamw, sgd, momentum, ...).")
@setting(
    "val_fraction",
    type=FiniteFloatRange(0, 1, max_open=True),
    help="Share of each class held out for validation (seeded); 0: none, every step runs --epochs.",
)
@setting("seed", type=int)
@setting(
    "augment",
    "--augment/--no-augment",
    help="timm's training augmentation (random resized crop, flip, colour jitter).",
)
@setting(
    "crops",
    type=PathType(path_type=Path, exists=True, dir_okay=False),
    help="boxes.jsonl of an earlier 'fcnx crop' of this dataset: train and validate on each image's box "
    "(the paper's use of its crops); images without a box are skipped and listed.",
)
@setting(
    "crop_jitter",
    type=FiniteFloatRange(min=0),
    help="--crops: move each training crop's centre by up to this share of its sides (seeded).",
)
@setting(
    "crop_scale",
    type=FiniteFloatRange(0, 1, max_open=True),
    help="--crops: scale each training crop's sides by a factor in [1 - S, 1 + S] (seeded).",
)
@setting(
    "folds",
    type=click.IntRange(min=2),
    help="Deal the split's images into K folds (seeded, stratified by class) and train K models of --net or "
    "--nets, each without one fold, in OUTDIR/fold<k>/, with OUTDIR/folds.json saying which images each did "
    "not see: 'fcnx suspects --folds OUTDIR' scores every image out of sample (docs/suspects.md).",
)
@setting("amp", "--amp/--no-amp", help="Mixed precision (CUDA only).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option(
    "--workers", default=LOADER_WORKERS, show_default=True, type=click.IntRange(min=0), help="Data-loading processes."
)
@click.option("--resume", is_flag=True, help="Continue the interrupted run in OUTDIR with its saved settings.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or per-epoch lines.")
@click.pass_context
@stoppable("train", "nothing saved yet; run the same command again")
def train_cmd(
    ctx: click.Context, outdir: Path, device: str, workers: int, resume: bool, quiet: bool, **options: Any
) -> None:
    """Fine-tune a backbone on a dataset by transfer learning, as the paper does: a new head for the
    dataset's classes trained first, then the backbone unfrozen all at once (VGG, "two-pass") or
    block by block (Inception, Xception), each step ending when validation top-1 stops improving.

    \b
    Examples:
      fcnx train --net inception_v3 --head 1024,512 --data food-101/ -o runs/iv3
      fcnx train --net vgg16 --weights vgg16_imagenet.safetensors --data food-101/ -o runs/vgg16
      fcnx train --resume -o runs/iv3                     # continue an interrupted run
      fcnx train --net inception_v3 --data food-101/ --crops cropped/boxes.jsonl -o runs/iv3-crops
      torchrun --nproc_per_node 4 -m fcnx train --net xception --data food-101/ -o runs/xc
      fcnx train --nets inception_v3,xception,vgg16 --data food-101/ -o runs/   # runs/ensemble.json
      fcnx train --folds 2 --nets inception_v3,xception --data food-101/ -o folds/   # folds/folds.json

    An image that is missing or cannot be read is skipped and counted, with one error line
    naming it; the run goes on and ends with exit status 1 (its result is valid).
    """
    given = {name for name in CONFIG_OPTIONS if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE}
    options["head"] = _parse_head(options["head"])
    for name in ("data", "crops"):  # absolute, so that --resume works from any folder
        if options[name] is not None:
            options[name] = str(options[name].resolve())
    nets = options.pop("nets")
    values = {name: options[name] for name in given}
    folds = options.pop("folds")
    launch = _Launch(outdir, resume, device, workers, quiet)
    if folds is not None or (resume and _is_folds(outdir)):
        _train_folds(launch, folds, nets, values, options)
    elif nets is not None or (resume and _is_ensemble(outdir)):
        _train_ensemble(launch, nets, values, options)
    else:
        _train_one(launch, values, options)


@dataclass
class _Launch:
    """Where and how ``fcnx train`` runs: the run folder, a new run or ``--resume``, device, loaders, quiet."""

    outdir: Path
    resume: bool
    device: str
    workers: int
    quiet: bool

    def run(
        self,
        data: str,
        train: Callable[..., Any],
        started: Callable[[], bool],
        discard: Callable[[bool], None],
        resumable: Callable[[], bool] = lambda: True,
    ) -> Any:
        """``train(device=, workers=, quiet=, log=, report=)`` into the checked run folder, the lines on stderr.

        A refused run that ``started`` nothing is ``discard``-ed (given whether the folder was created here); a
        stopped one says how to continue it where that is ``resumable``."""
        from fcnx.io.files import check_outdir

        created = not self.outdir.exists()
        check_outdir(self.outdir, [Path(data)])
        log = (lambda text: None) if self.quiet else (lambda text: click.echo(one_line(text), err=True))
        try:
            return train(
                device=self.device,
                workers=self.workers,
                quiet=self.quiet,
                log=log,
                report=lambda text: click.echo(one_line(text), err=True),
            )
        except FcnxError:
            if not self.resume and not started():  # refused before anything trained: leave no trace
                discard(created)
            raise
        except KeyboardInterrupt:
            if resumable():
                raise Interrupted(f"continue with: fcnx train --resume -o {self.outdir}") from None
            raise


def _refuse_taken(outdir: Path, *names: str) -> None:
    """A new run refuses a folder holding one of ``names`` (a run's files) or one of a run's outputs."""
    from fcnx.training import trainer

    if any((outdir / name).exists() for name in names):
        raise UsageError(TAKEN, outdir)
    trainer.refuse_taken(outdir)


def _train_one(launch: _Launch, given: dict[str, Any], options: dict[str, Any]) -> None:
    """One run of ``--net`` in OUTDIR (see :mod:`fcnx.training.trainer`)."""
    from fcnx.training import trainer

    outdir = launch.outdir
    config = _resumed_config(outdir, given) if launch.resume else _new_config(outdir, options)
    if config is None:
        return
    resume_file = outdir / trainer.RESUME
    result = launch.run(
        config.data,
        lambda **how: trainer.train(config, outdir, resume=launch.resume, **how),
        started=resume_file.is_file,
        discard=lambda created: outdir.rmdir() if created and not any(outdir.iterdir()) else None,
        resumable=resume_file.is_file,
    )
    if result.history:
        summary = f"best: {result.best}"
        if result.best_top1 is not None:
            summary += f" (validation top-1 {result.best_top1:.2%})"
        click.echo(one_line(summary))
    if result.skipped:
        click.echo(
            one_line(
                f"train: {len(result.skipped)} image(s) skipped ({result.missing} missing, "
                f"{len(result.skipped) - result.missing} unreadable), listed in {outdir / trainer.SKIPPED}"
            ),
            err=True,
        )
        raise SystemExit(1)


def _new_config(outdir: Path, options: dict[str, Any]) -> TrainConfig:
    from fcnx.training import trainer

    if options["net"] is None or options["data"] is None:
        raise UsageError("fcnx train needs --net NAME and --data ROOT (or --resume to continue a run)")
    _refuse_taken(outdir, trainer.RESUME)
    return TrainConfig(**options)


def _resumed_config(outdir: Path, given: dict[str, Any]) -> TrainConfig | None:
    """The saved settings of the run in ``outdir`` (``None``: it has finished, said on stdout)."""
    from fcnx.backbones import checkpoint
    from fcnx.training import trainer

    if not (outdir / trainer.RESUME).is_file():
        if (outdir / trainer.RESUME).exists():  # a FIFO or a folder: say what it is, never open it
            checkpoint.check_weight_file(outdir / trainer.RESUME)
        raise UsageError(f"nothing to resume: no {trainer.RESUME} here", outdir)
    config, progress, _ = trainer.read_resume(outdir)
    refuse_changed(vars(config), given, "the run with its")
    if progress.finished:
        click.echo(one_line(f"{outdir}: this run has finished; its result is {outdir / trainer.BEST}"))
        return None
    return config


def _is_folds(outdir: Path) -> bool:
    from fcnx.io.folds import FOLDS

    return (outdir / FOLDS).is_file()


def _net_names(text: str | None) -> list[str]:
    return [n.strip() for n in (text or "").split(",") if n.strip()]


def _train_folds(
    launch: _Launch, k: int | None, nets: str | None, given: dict[str, Any], options: dict[str, Any]
) -> None:
    """``--folds K``: K fold models of --net or --nets in ``outdir/fold<k>/``, then ``folds.json``."""
    from fcnx.io.folds import FOLDS
    from fcnx.training import folds as folding
    from fcnx.training import manifest, trainer

    outdir = launch.outdir
    if launch.resume:
        if nets is not None or options["net"] is not None:
            raise UsageError("--resume continues the folds' saved nets; leave out --net and --nets")
        if not _is_folds(outdir):
            raise UsageError(f"nothing to resume: no {FOLDS} here", outdir)
        plan = folding.resume_folds(outdir, given)
    else:
        if nets is not None and options["net"] is not None:
            raise UsageError("give --net NAME (one run) or --nets A,B,C (an ensemble), not both")
        names = _net_names(nets or options["net"])
        if not names or options["data"] is None:
            raise UsageError("fcnx train --folds K needs --net NAME (or --nets A,B,C) and --data ROOT")
        _refuse_taken(outdir, FOLDS, manifest.MANIFEST, trainer.RESUME)
        plan = folding.plan(TrainConfig(**{**options, "net": names[0], "folds": k}), names, outdir)
    result = launch.run(
        plan.config["data"],
        lambda **how: folding.train_folds(plan, outdir, **how),
        started=lambda: any((outdir / f.folder / n / trainer.RESUME).exists() for f in plan.folds for n in plan.nets),
        discard=lambda created: folding.discard(plan, outdir, created),
    )
    for fold in result.folds.folds:
        top1 = "" if fold.val_top1 is None else f" (validation top-1 {fold.val_top1:.2%})"
        held = len(result.folds.held_out(fold.fold))
        click.echo(one_line(f"fold {fold.fold}: {outdir / fold.folder}, {held} image(s) held out{top1}"))
    click.echo(
        one_line(
            f"folds: {result.path}; score each image with the models that did not see it: "
            f"fcnx suspects --folds {outdir} --data {plan.config['data']}"
        )
    )
    if result.skipped:
        click.echo(
            f"train: {len(result.skipped)} image(s) skipped, listed in each fold model's {trainer.SKIPPED}", err=True
        )
        raise SystemExit(1)


def _is_ensemble(outdir: Path) -> bool:
    from fcnx.training import manifest, trainer

    return (outdir / manifest.MANIFEST).is_file() and not (outdir / trainer.RESUME).is_file()


def _train_ensemble(launch: _Launch, nets: str | None, given: dict[str, Any], options: dict[str, Any]) -> None:
    """``--nets``: every member in ``outdir/<net>/``, then ``ensemble.json`` (see :mod:`fcnx.training.ensemble`)."""
    from fcnx.training import ensemble, manifest, trainer

    outdir = launch.outdir
    if launch.resume:
        if nets is not None:
            raise UsageError("--resume continues the ensemble's saved members; leave out --nets")
        plan = ensemble.resume_manifest(outdir, given)
    else:
        if options["net"] is not None:
            raise UsageError("give --net NAME (one run) or --nets A,B,C (an ensemble), not both")
        if options["data"] is None:
            raise UsageError("fcnx train --nets needs --data ROOT")
        if (outdir / manifest.MANIFEST).exists() or (outdir / trainer.RESUME).exists():
            raise UsageError(TAKEN, outdir)
        names = _net_names(nets)
        if not names:
            raise UsageError("--nets needs backbone names, e.g. --nets inception_v3,xception,vgg16")
        for name in names:
            trainer.refuse_taken(outdir / name)
        plan = ensemble.plan(TrainConfig(**{**options, "net": names[0]}), names, outdir)
    result = launch.run(
        plan.config["data"],
        lambda **how: ensemble.train_ensemble(plan, outdir, **how),
        started=lambda: any((outdir / m.net / trainer.RESUME).exists() for m in plan.members),
        discard=lambda created: ensemble.discard(plan, outdir, created),
    )
    done = result.manifest
    for member in done.members:
        top1 = "" if member.val_top1 is None else f" (validation top-1 {member.val_top1:.2%})"
        click.echo(one_line(f"{member.net}: {outdir / member.checkpoint}{top1}"))
    top1 = "" if done.val_top1 is None else f" (ensemble validation top-1 {done.val_top1:.2%})"
    click.echo(one_line(f"ensemble: {result.path}{top1}; use it with fcnx crop --ensemble {result.path}"))
    if result.skipped:
        click.echo(
            f"train: {len(result.skipped)} image(s) skipped, listed in each member's {trainer.SKIPPED}", err=True
        )
        raise SystemExit(1)
