"""``fcnx train``: fine-tune a backbone on a labelled dataset, as the paper does (section II)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from fcnx.backbones.checkpoint import MAX_INPUT_SIZE
from fcnx.cli.common import FiniteFloatRange, Interrupted, PathType, stoppable
from fcnx.errors import FcnxError, UsageError, one_line

#: options that are part of the saved configuration (``--resume`` refuses other values for them)
CONFIG_OPTIONS = (
    "net",
    "data",
    "split",
    "size",
    "weights",
    "head",
    "schedule",
    "blocks_per_step",
    "epochs",
    "patience",
    "batch_size",
    "lr",
    "finetune_lr",
    "weight_decay",
    "opt",
    "val_fraction",
    "seed",
    "augment",
    "amp",
    "crops",
    "crop_jitter",
    "crop_scale",
    "folds",
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
@click.option("--net", help="Backbone to fine-tune (see 'fcnx list-backbones'), e.g. inception_v3.")
@click.option(
    "--nets",
    help="Train an ensemble: these backbones (comma-separated) one after another, each in OUTDIR/<net>/ with "
    "the same settings, then OUTDIR/ensemble.json for 'fcnx crop --ensemble'.",
)
@click.option(
    "--data",
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
@click.option(
    "--split",
    default="train",
    show_default=True,
    type=click.Choice(["train", "test", "all"]),
    help="Split to train on (the validation images are held out from it).",
)
@click.option(
    "--size",
    default=299,
    show_default=True,
    type=click.IntRange(min=8, max=MAX_INPUT_SIZE),
    help="Training input side: the ensemble's common kernel (the paper trains every net at 299).",
)
@click.option(
    "--weights",
    default="pretrained",
    show_default=True,
    help="Start from 'pretrained' (ImageNet), a hub tag, 'none' (random) or a weight file.",
)
@click.option(
    "--head", default="", help="Hidden dense widths of the new head, e.g. 1024,512 (the paper's InceptionV3)."
)
@click.option(
    "--schedule",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "two-pass", "blockwise", "all"]),
    help="Unfreezing: head then all (two-pass), head then block by block (blockwise), or all at once. "
    "auto: two-pass for VGG, blockwise otherwise.",
)
@click.option(
    "--blocks-per-step",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Blocks unfrozen per blockwise step.",
)
@click.option("--epochs", default=10, show_default=True, type=click.IntRange(min=1), help="Most epochs per step.")
@click.option(
    "--patience",
    default=3,
    show_default=True,
    type=click.IntRange(min=1),
    help="A step ends after this many epochs without a better validation top-1.",
)
@click.option(
    "--batch-size",
    default=32,
    show_default=True,
    type=click.IntRange(min=1),
    help="Images per batch (per process under torchrun).",
)
@click.option(
    "--lr",
    default=1e-3,
    show_default=True,
    type=FiniteFloatRange(min=0, min_open=True),
    help="Learning rate of the first step (the new head).",
)
@click.option(
    "--finetune-lr",
    default=None,
    type=FiniteFloatRange(min=0, min_open=True),
    help="Learning rate of the later steps [default: lr / 10].",
)
@click.option("--weight-decay", default=1e-4, show_default=True, type=FiniteFloatRange(min=0))
@click.option("--opt", default="adamw", show_default=True, help="Optimizer (timm's names: adamw, sgd, momentum, ...).")
@click.option(
    "--val-fraction",
    default=0.1,
    show_default=True,
    type=FiniteFloatRange(0, 1, max_open=True),
    help="Share of each class held out for validation (seeded); 0: none, every step runs --epochs.",
)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--augment/--no-augment",
    default=True,
    show_default=True,
    help="timm's training augmentation (random resized crop, flip, colour jitter).",
)
@click.option(
    "--crops",
    type=PathType(path_type=Path, exists=True, dir_okay=False),
    help="boxes.jsonl of an earlier 'fcnx crop' of this dataset: train and validate on each image's box "
    "(the paper's use of its crops); images without a box are skipped and listed.",
)
@click.option(
    "--crop-jitter",
    default=0.0,
    show_default=True,
    type=FiniteFloatRange(min=0),
    help="--crops: move each training crop's centre by up to this share of its sides (seeded).",
)
@click.option(
    "--crop-scale",
    default=0.0,
    show_default=True,
    type=FiniteFloatRange(0, 1, max_open=True),
    help="--crops: scale each training crop's sides by a factor in [1 - S, 1 + S] (seeded).",
)
@click.option(
    "--folds",
    default=None,
    type=click.IntRange(min=2),
    help="Deal the split's images into K folds (seeded, stratified by class) and train K models of --net or "
    "--nets, each without one fold, in OUTDIR/fold<k>/, with OUTDIR/folds.json saying which images each did "
    "not see: 'fcnx suspects --folds OUTDIR' scores every image out of sample (docs/suspects.md).",
)
@click.option("--amp/--no-amp", default=True, show_default=True, help="Mixed precision (CUDA only).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--workers", default=4, show_default=True, type=click.IntRange(min=0), help="Data-loading processes.")
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
    from fcnx.backbones import checkpoint
    from fcnx.training import trainer

    given = {name for name in CONFIG_OPTIONS if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE}
    options["head"] = _parse_head(options["head"])
    if options["data"] is not None:  # absolute, so that --resume works from any folder
        options["data"] = str(options["data"].resolve())
    if options["crops"] is not None:
        options["crops"] = str(options["crops"].resolve())
    nets = options.pop("nets")
    values = {name: options[name] for name in given}
    folds = options.pop("folds")
    if folds is not None or (resume and _is_folds(outdir)):
        _train_folds(folds, nets, outdir, resume, values, options, device, workers, quiet)
        return
    if nets is not None or (resume and _is_ensemble(outdir)):
        _train_ensemble(nets, outdir, resume, values, options, device, workers, quiet)
        return
    if resume:
        if not (outdir / trainer.RESUME).is_file():
            if (outdir / trainer.RESUME).exists():  # a FIFO or a folder: say what it is, never open it
                checkpoint.check_weight_file(outdir / trainer.RESUME)
            raise UsageError(f"nothing to resume: no {trainer.RESUME} here", outdir)
        config, progress, _ = trainer.read_resume(outdir)
        saved = vars(config)
        changed = sorted(name for name in given if options[name] != saved[name])
        if changed:
            raise UsageError(
                f"--resume continues the run with its saved settings; --{changed[0].replace('_', '-')} "
                f"was {saved[changed[0]]!r}, not {options[changed[0]]!r}"
            )
        if progress.finished:
            click.echo(one_line(f"{outdir}: this run has finished; its result is {outdir / trainer.BEST}"))
            return
    else:
        if options["net"] is None or options["data"] is None:
            raise UsageError("fcnx train needs --net NAME and --data ROOT (or --resume to continue a run)")
        if (outdir / trainer.RESUME).exists():
            raise UsageError(
                "this folder holds a training run already: continue it with --resume, or choose another folder", outdir
            )
        trainer.refuse_taken(outdir)
        config = trainer.TrainConfig(**options)
    from fcnx.io.files import check_outdir

    created = not outdir.exists()
    check_outdir(outdir, [Path(config.data)])
    log = (lambda text: None) if quiet else (lambda text: click.echo(one_line(text), err=True))
    try:
        result = trainer.train(
            config,
            outdir,
            device=device,
            workers=workers,
            resume=resume,
            quiet=quiet,
            log=log,
            report=lambda text: click.echo(one_line(text), err=True),
        )
    except FcnxError:
        if created and not any(outdir.iterdir()):  # refused before anything was written: leave no trace
            outdir.rmdir()
        raise
    except KeyboardInterrupt:
        if (outdir / trainer.RESUME).is_file():
            raise Interrupted(f"continue with: fcnx train --resume -o {outdir}") from None
        raise
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


def _is_folds(outdir: Path) -> bool:
    from fcnx.io.folds import FOLDS

    return (outdir / FOLDS).is_file()


def _train_folds(
    k: int | None,
    nets: str | None,
    outdir: Path,
    resume: bool,
    given: dict[str, Any],
    options: dict[str, Any],
    device: str,
    workers: int,
    quiet: bool,
) -> None:
    """``--folds K``: K fold models of --net or --nets in ``outdir/fold<k>/``, then ``folds.json``."""
    from fcnx.io.files import check_outdir
    from fcnx.io.folds import FOLDS
    from fcnx.training import folds as folding
    from fcnx.training import manifest, trainer

    if resume:
        if nets is not None or options["net"] is not None:
            raise UsageError("--resume continues the folds' saved nets; leave out --net and --nets")
        if not _is_folds(outdir):
            raise UsageError(f"nothing to resume: no {FOLDS} here", outdir)
        plan = folding.resume_folds(outdir, given)
    else:
        if nets is not None and options["net"] is not None:
            raise UsageError("give --net NAME (one run) or --nets A,B,C (an ensemble), not both")
        names = [n.strip() for n in (nets or options["net"] or "").split(",") if n.strip()]
        if not names or options["data"] is None:
            raise UsageError("fcnx train --folds K needs --net NAME (or --nets A,B,C) and --data ROOT")
        if any((outdir / name).exists() for name in (FOLDS, manifest.MANIFEST, trainer.RESUME)):
            raise UsageError(
                "this folder holds a training run already: continue it with --resume, or choose another folder", outdir
            )
        trainer.refuse_taken(outdir)
        plan = folding.plan(trainer.TrainConfig(**{**options, "net": names[0], "folds": k}), names, outdir)
    created = not outdir.exists()
    check_outdir(outdir, [Path(plan.config["data"])])
    log = (lambda text: None) if quiet else (lambda text: click.echo(one_line(text), err=True))
    try:
        result = folding.train_folds(
            plan,
            outdir,
            device=device,
            workers=workers,
            quiet=quiet,
            log=log,
            report=lambda t: click.echo(one_line(t), err=True),
        )
    except FcnxError:
        if not resume and not any(
            (outdir / f.folder / n / trainer.RESUME).exists() for f in plan.folds for n in plan.nets
        ):
            folding.discard(plan, outdir, created)  # refused before any model trained: leave no trace
        raise
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted; continue with: fcnx train --resume -o {outdir}", err=True)
        raise click.Abort() from None
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


def _train_ensemble(
    nets: str | None,
    outdir: Path,
    resume: bool,
    given: dict[str, Any],
    options: dict[str, Any],
    device: str,
    workers: int,
    quiet: bool,
) -> None:
    """``--nets``: every member in ``outdir/<net>/``, then ``ensemble.json`` (see :mod:`fcnx.training.ensemble`)."""
    from fcnx.io.files import check_outdir
    from fcnx.training import ensemble, manifest, trainer

    if resume:
        if nets is not None:
            raise UsageError("--resume continues the ensemble's saved members; leave out --nets")
        plan = ensemble.resume_manifest(outdir, given)
    else:
        if options["net"] is not None:
            raise UsageError("give --net NAME (one run) or --nets A,B,C (an ensemble), not both")
        if options["data"] is None:
            raise UsageError("fcnx train --nets needs --data ROOT")
        if (outdir / manifest.MANIFEST).exists() or (outdir / trainer.RESUME).exists():
            raise UsageError(
                "this folder holds a training run already: continue it with --resume, or choose another folder", outdir
            )
        names = [n.strip() for n in nets.split(",") if n.strip()] if nets else []
        if not names:
            raise UsageError("--nets needs backbone names, e.g. --nets inception_v3,xception,vgg16")
        for name in names:
            trainer.refuse_taken(outdir / name)
        plan = ensemble.plan(trainer.TrainConfig(**{**options, "net": names[0]}), names, outdir)
    created = not outdir.exists()
    check_outdir(outdir, [Path(plan.config["data"])])
    log = (lambda text: None) if quiet else (lambda text: click.echo(one_line(text), err=True))
    try:
        result = ensemble.train_ensemble(
            plan,
            outdir,
            device=device,
            workers=workers,
            quiet=quiet,
            log=log,
            report=lambda t: click.echo(one_line(t), err=True),
        )
    except FcnxError:
        if not resume and not any((outdir / m.net / trainer.RESUME).exists() for m in plan.members):
            ensemble.discard(plan, outdir, created)  # refused before any member trained: leave no trace
        raise
    except KeyboardInterrupt:
        raise Interrupted(f"continue with: fcnx train --resume -o {outdir}") from None
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
