"""``fcnx suspects``: images the ensemble suggests are mislabelled (the paper's signal, or a graded one)."""

from __future__ import annotations

from pathlib import Path

import click

from fcnx.cli.common import PathType, announce, ensemble_options, jobs_option, resolve_nets, stoppable
from fcnx.cli.progress import Progress
from fcnx.jobs.suspects import SIGNALS


@click.command("suspects")
@ensemble_options
@click.option(
    "--data",
    "data",
    required=True,
    type=PathType(path_type=Path, exists=True, file_okay=False),
    help="Dataset root: Food-101 layout or class folders (<class>/*.jpg).",
)
@click.option(
    "--split",
    default=None,
    type=click.Choice(["train", "test", "all"]),
    help="Images to judge [default: all; with --folds, the split the folds were dealt from].",
)
@click.option(
    "--folds",
    type=PathType(path_type=Path, exists=True),
    help="The output of 'fcnx train --folds K' (its folds.json, or the folder): score each image with the "
    "fold model that did not train on it (out of sample), instead of --nets/--weights/--ensemble/--kernel.",
)
@click.option(
    "-o",
    "--output",
    "outdir",
    required=True,
    type=PathType(path_type=Path, file_okay=False),
    help="Folder for suspects.csv, suspects.json and suspects.html, and suspects.jsonl (each image as it is "
    "judged): running the same command again resumes a run that was stopped.",
)
@click.option(
    "--signal",
    default="paper",
    show_default=True,
    type=click.Choice(SIGNALS),
    help="paper: no net votes for the label at any cell of any scale. graded: the label is less likely "
    "than another class, ranked by the gap (finds far more on cluttered images: docs/benchmark.md).",
)
@click.option(
    "--top",
    default=None,
    type=click.IntRange(min=1),
    help="List at most this many [default: all for paper, 5% of the images for graded].",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@jobs_option
@stoppable("suspects")
def suspects_cmd(
    nets: str | None,
    weights: tuple[str, ...],
    kernel: int | str | None,
    device: str,
    data: Path,
    split: str | None,
    folds: Path | None,
    outdir: Path,
    signal: str,
    top: int | None,
    quiet: bool,
    jobs: int | None,
    backend: str,
    precision: str,
) -> None:
    """List the images the ensemble suggests are mislabelled.

    With the paper's signal, the images whose label no net finds at any scale, the most convincing
    first (most nets agreeing on another category, then their confidence); with the graded signal,
    the images whose label is furthest below the most likely class. As CSV/JSON and an HTML page of
    thumbnails for a quick human review.

    \b
    Examples:
      fcnx suspects --nets inception_v3,xception --weights inception_v3=iv3.safetensors \\
                    --weights xception=xc.safetensors --data food-101/ -o review/
      fcnx suspects --nets tiny_vgg,tiny_resnet,tiny_inception --data bench/ --signal graded --top 20 -o review/
      fcnx suspects --folds folds/ --data food-101/ --signal graded -o review/   # out of sample (fcnx train --folds)
    """
    from fcnx.errors import one_line
    from fcnx.jobs.suspects import SuspectsOptions, run_suspects

    runs_on = (backend, precision)
    if folds is None:
        names, weight_map, kernel = resolve_nets(nets, weights, kernel)
        options = SuspectsOptions(names, weight_map, kernel, split or "all", signal, top, device, None, jobs, *runs_on)
    else:
        from fcnx.errors import UsageError
        from fcnx.io.folds import read_folds

        if nets is not None or weights or kernel is not None:
            raise UsageError(
                "--folds gives the models and their kernel: leave out --nets, --weights, --ensemble, --kernel"
            )
        saved = read_folds(folds)
        split = split or saved.config.get("split", "all")
        options = SuspectsOptions(saved.nets, {}, saved.kernel, split, signal, top, device, str(folds), jobs, *runs_on)
    job = run_suspects(data, options, outdir)
    announce("suspects", job.warnings, len(job.pending), len(job.items), job.plan)
    bar = Progress(len(job.pending), "suspects", quiet=quiet)
    try:
        suspects = job.run(progress=bar.update)
    finally:
        bar.close()
    for s in suspects[:20]:
        click.echo(
            one_line(
                f"{s.path}: label {s.label!r}, nets see {s.other!r} ({s.other_votes} vote(s), "
                f"p={s.other_confidence:.2f})"
            )
        )
    click.echo(f"suspects: {len(suspects)} of {len(job.items)} image(s); see {job.outdir / 'suspects.html'}", err=True)
    if job.failures:
        for line in job.failures:
            click.echo(f"error: {one_line(line)}", err=True)
        click.echo(
            f"suspects: {len(job.failures)} unreadable image(s) skipped (listed in {job.outdir / 'suspects.json'})",
            err=True,
        )
        raise SystemExit(1)
