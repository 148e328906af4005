"""``fcnx train --nets a,b,c``: every member of an ensemble fine-tuned in turn, then ``ensemble.json``.

Each member is an ordinary run (:func:`fcnx.training.trainer.train`) in ``outdir/<net>/`` with the
shared settings and the paper's schedule for its architecture (``--schedule auto``), at the
common size, which becomes the ensemble's kernel. ``ensemble.json`` is written before the first
member starts (``complete: false``) and after each one ends, so ``--resume`` knows the members:
finished ones are kept, an interrupted one resumes where it stopped, the others start. When the
last member ends, the ensemble (mean of the members' probabilities) is scored on the validation
images the members held out (the same for all: same data, seed and fraction) and the file is
marked complete, ready for ``fcnx crop/evaluate --ensemble``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from fcnx.errors import UsageError
from fcnx.io import datasets
from fcnx.training import manifest as manifests
from fcnx.training import trainer
from fcnx.training.config import LOADER_WORKERS, refuse_changed


@dataclass
class EnsembleResult:
    """What :func:`train_ensemble` leaves behind: the manifest, its file, and every image a member skipped."""

    manifest: manifests.Manifest
    path: Path
    skipped: list[str] = field(default_factory=list)


def plan(config: trainer.TrainConfig, nets: list[str], outdir: Path) -> manifests.Manifest:
    """The manifest of a new ensemble run (every member still to train)."""
    from fcnx.backbones.registry import get_backbone

    if len(set(nets)) != len(nets):
        raise UsageError(f"--nets names a backbone twice: {','.join(nets)}")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UsageError("--nets trains the members one after another; under torchrun train one --net at a time")
    names = [get_backbone(net).name for net in nets]  # unknown names refused before anything is written
    datasets.open_dataset(config.data, config.split)  # so is a dataset that is not one
    shared = {k: v for k, v in asdict(config).items() if k != "net"}
    members = [manifests.Member(net, f"{net}/{trainer.BEST}") for net in names]
    return manifests.Manifest(members=members, kernel=config.size, config=shared)


def train_ensemble(
    manifest: manifests.Manifest,
    outdir: Path,
    *,
    device: str = "auto",
    workers: int = LOADER_WORKERS,
    quiet: bool = False,
    log: Callable[[str], None] = print,
    report: Callable[[str], None] | None = None,
) -> EnsembleResult:
    """Train (or continue) every unfinished member of ``manifest`` in ``outdir``, then score the ensemble."""
    result = EnsembleResult(manifest, outdir / manifests.MANIFEST)
    manifest.write(outdir)
    for k, member in enumerate(manifest.members, 1):
        folder = outdir / member.net
        resume = (folder / trainer.RESUME).is_file()
        config = trainer.TrainConfig.from_dict({**manifest.config, "net": member.net})
        if resume and trainer.read_resume(folder)[1].finished and member.finished:
            log(f"member {k}/{len(manifest.members)}: {member.net} trained already")
            continue
        log(f"member {k}/{len(manifest.members)}: {member.net} in {folder}" + (" (resumed)" if resume else ""))
        run = trainer.train(
            config, folder, device=device, workers=workers, resume=resume, quiet=quiet, log=log, report=report
        )
        manifest.classes = trainer.read_resume(folder)[2]["classes"]
        member.val_top1, member.finished = run.best_top1, True
        manifest.write(outdir)
    result.skipped = skipped([outdir / member.net for member in manifest.members])
    manifest.val_top1 = _ensemble_top1(manifest, outdir, device)
    manifest.complete = True
    manifest.write(outdir)
    return result


def skipped(runs: list[Path]) -> list[str]:
    """What the runs in ``runs`` left out (their ``skipped.txt``), this session or an earlier one: each line once."""
    lines: list[str] = []
    for folder in runs:
        listed = folder / trainer.SKIPPED
        for line in listed.read_text(encoding="utf-8").splitlines() if listed.is_file() else []:
            if line not in lines:
                lines.append(line)
    return lines


def _ensemble_top1(manifest: manifests.Manifest, outdir: Path, device: str) -> float | None:
    """Top-1 of the members' mean probabilities on their validation images (``None`` without validation)."""
    from fcnx.engine.devices import resolve_device
    from fcnx.engine.ensemble import load_ensemble
    from fcnx.jobs import scoring

    config = trainer.TrainConfig.from_dict({**manifest.config, "net": manifest.members[0].net})
    images = trainer.split(config)  # the members' own validation images (and crops)
    val_items, boxes = images.validation, images.boxes
    box_of: Any = None if boxes is None else (lambda item, pixels: boxes[item.path])
    if not val_items:
        return None
    files = {m.net: str(outdir / m.checkpoint) for m in manifest.members}
    ensemble = load_ensemble(list(files), files, kernel=manifest.kernel, device=resolve_device(device))
    scored = scoring.evaluate(ensemble, val_items, box_of)
    side = scored.cropped if config.crops else scored.original
    return side[scored.names[-1]].rate(1)


def discard(manifest: manifests.Manifest, outdir: Path, created: bool) -> None:
    """Remove what an ensemble run refused before training wrote: its manifest, empty member folders, ``outdir``
    itself when ``created`` and left empty."""
    (outdir / manifests.MANIFEST).unlink(missing_ok=True)
    for folder in [outdir / m.net for m in manifest.members] + ([outdir] if created else []):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def resume_manifest(outdir: Path, given: dict[str, Any]) -> manifests.Manifest:
    """The manifest in ``outdir`` for ``--resume``; refuses settings given that differ from the saved ones."""
    manifest = manifests.read_manifest(outdir / manifests.MANIFEST)
    refuse_changed(manifest.config, given, "the ensemble with its")
    return replace(manifest, complete=False)
