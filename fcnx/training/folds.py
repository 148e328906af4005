"""``fcnx train --folds K``: K fold models, each trained without one fold of the split, for out-of-sample scores.

The split's images are dealt into K folds (:func:`fcnx.io.folds.assign_folds`: seeded by ``--seed``,
stratified by class). Fold model ``k`` is an ordinary ensemble run (:func:`fcnx.training.ensemble.train_ensemble`,
of one net or several) in ``outdir/fold<k>/``, whose settings leave fold ``k`` out
(:attr:`~fcnx.training.trainer.TrainConfig.fold`); its own validation images are held out from the rest.
``folds.json`` (:mod:`fcnx.io.folds`) is written before the first fold model starts and after each one
ends. ``--resume`` deals the folds again from the dataset and refuses it when the split differs from
the saved one, keeps the finished fold models, resumes the interrupted one where it stopped and
trains the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from fcnx.errors import UsageError
from fcnx.io.folds import FOLDS, Fold, Folds, assign_folds, fold_folder, read_folds
from fcnx.training import ensemble, trainer
from fcnx.training import manifest as manifests
from fcnx.training.config import LOADER_WORKERS, refuse_changed


@dataclass
class FoldsResult:
    """What :func:`train_folds` leaves behind: the folds, their file, and every image a fold model skipped."""

    folds: Folds
    path: Path
    skipped: list[str] = field(default_factory=list)


def assignment(config: trainer.TrainConfig) -> dict[str, int]:
    """The fold of every image of ``config``'s split (with ``--crops``: of those that have a box), by relative path."""
    items = trainer.split(replace(config, fold=0)).data.items
    if len(items) < config.folds:
        raise UsageError(f"--folds {config.folds} needs at least {config.folds} images; the split has {len(items)}")
    return {str(item.rel): fold for item, fold in zip(items, assign_folds(items, config.folds, config.seed))}


def plan(config: trainer.TrainConfig, nets: list[str], outdir: Path) -> Folds:
    """The folds of a new run of ``config`` (``config.folds`` of them), every fold model of ``nets`` still to train."""
    names = [m.net for m in ensemble.plan(config, nets, outdir).members]  # names and dataset checked there
    images = assignment(config)
    shared = {k: v for k, v in asdict(config).items() if k not in ("net", "fold")}
    folds = [
        Fold(k, fold_folder(k), {net: f"{fold_folder(k)}/{net}/{trainer.BEST}" for net in names})
        for k in range(1, config.folds + 1)
    ]
    return Folds(config.folds, config.seed, names, config.size, shared, images, folds)


def resume_folds(outdir: Path, given: dict[str, Any]) -> Folds:
    """The folds in ``outdir`` for ``--resume``: settings given must be the saved ones, the split the saved one."""
    path = outdir / FOLDS
    folds = read_folds(path)
    refuse_changed(folds.config, given, "the folds with their")
    now = assignment(_config(folds, 0))
    if now != folds.images:
        differ = sorted(set(now.items()) ^ set(folds.images.items()))
        raise UsageError(
            f"the split's images changed since the folds were dealt ({len(differ)} difference(s), e.g. "
            f"{differ[0][0]}): resuming would train on another split; start a new run",
            path,
        )
    folds.complete = False
    return folds


def _config(folds: Folds, fold: int) -> trainer.TrainConfig:
    return trainer.TrainConfig.from_dict({**folds.config, "net": folds.nets[0], "fold": fold})


def train_folds(
    folds: Folds,
    outdir: Path,
    *,
    device: str = "auto",
    workers: int = LOADER_WORKERS,
    quiet: bool = False,
    log: Callable[[str], None] = print,
    report: Callable[[str], None] | None = None,
) -> FoldsResult:
    """Train (or continue) every unfinished fold model of ``folds`` in ``outdir``."""
    result = FoldsResult(folds, outdir / FOLDS)
    folds.write(outdir)
    for fold in folds.folds:
        folder = outdir / fold.folder
        held = len(folds.held_out(fold.fold))
        if fold.finished:
            log(f"fold {fold.fold}/{folds.k}: trained already")
        else:
            log(f"fold {fold.fold}/{folds.k}: trained without its {held} image(s), in {folder}")
            folder.mkdir(exist_ok=True)
            if (folder / manifests.MANIFEST).is_file():
                members = ensemble.resume_manifest(folder, {})
            else:
                members = ensemble.plan(_config(folds, fold.fold), folds.nets, folder)
            run = ensemble.train_ensemble(
                members, folder, device=device, workers=workers, quiet=quiet, log=log, report=report
            )
            folds.classes = run.manifest.classes
            fold.val_top1, fold.finished = run.manifest.val_top1, True
            folds.write(outdir)
    result.skipped = ensemble.skipped([outdir / fold.folder / net for fold in folds.folds for net in folds.nets])
    folds.complete = True
    folds.write(outdir)
    return result


def discard(folds: Folds, outdir: Path, created: bool) -> None:
    """Remove what a run refused before training wrote: ``folds.json``, the fold models' manifests and empty
    folders, ``outdir`` itself when ``created`` and left empty."""
    for fold in folds.folds:
        members = [manifests.Member(net, fold.checkpoints[net]) for net in folds.nets]
        ensemble.discard(manifests.Manifest(members, folds.kernel, folds.config), outdir / fold.folder, True)
    (outdir / FOLDS).unlink(missing_ok=True)
    if created and outdir.is_dir() and not any(outdir.iterdir()):
        outdir.rmdir()
