"""``fcnx evaluate``: top-1/top-5 of each net on the original test images and on their crops."""

from __future__ import annotations

from pathlib import Path

import click

from fcnx.cli.common import (
    Interrupted,
    PathType,
    announce,
    engine_options,
    ensemble_options,
    is_local_engine,
    jobs_option,
    resolve_nets,
    stoppable,
)
from fcnx.cli.progress import Progress
from fcnx.cli.text import text_table


def _table(rows: list[dict]) -> str:
    cropped = "cropped_top1" in rows[0]
    head = ["model", "images", "top-1", "top-5"] + (
        ["cropped top-1", "cropped top-5", "delta top-1"] if cropped else []
    )
    lines = [head]
    for r in rows:
        line = [r["model"], str(r["images"]), f"{100 * r['original_top1']:.2f}%", f"{100 * r['original_top5']:.2f}%"]
        if cropped:
            line += [
                f"{100 * r['cropped_top1']:.2f}%",
                f"{100 * r['cropped_top5']:.2f}%",
                f"{100 * r['delta_top1']:+.2f}",
            ]
        lines.append(line)
    return text_table(lines)


@click.command("evaluate")
@ensemble_options
@click.option(
    "--data",
    "data",
    required=True,
    type=PathType(path_type=Path, exists=True, file_okay=False),
    help="Dataset root: Food-101 layout (images/<class>/..., meta/classes.txt, meta/{train,test}.txt) "
    "or class folders (<class>/*.jpg, optionally under train/ and test/).",
)
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "test", "all"]))
@click.option(
    "--crops",
    "crops",
    type=PathType(path_type=Path, exists=True, dir_okay=False),
    help="boxes.jsonl of an earlier 'fcnx crop' of the same images: score the crops too.",
)
@click.option(
    "--crop", "crop_now", is_flag=True, help="Crop every image for its label with this ensemble, then score the crops."
)
@click.option(
    "--skip-missing",
    is_flag=True,
    help="With --crops: leave out quietly (on both sides) the images that have no box, e.g. those the crop "
    "run could not read, instead of reporting each as a failure and exiting with 1.",
)
@click.option(
    "-o",
    "--output",
    "outdir",
    type=PathType(path_type=Path, file_okay=False),
    help="Folder for evaluation.csv and evaluation.json, and evaluation.jsonl (each image as it is scored): "
    "running the same command again resumes a run that was stopped.",
)
@click.option(
    "--batch-size",
    default=None,
    type=click.IntRange(min=1),
    help="Originals and crops classified together (all are squashed to the kernel first; the scores do "
    "not depend on it) [default: 8 on a GPU, 1 on the CPU].",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@jobs_option
@engine_options
@stoppable("evaluate")
def evaluate_cmd(
    nets: str | None,
    weights: tuple[str, ...],
    kernel: int | str | None,
    device: str,
    data: Path,
    split: str,
    crops: Path | None,
    crop_now: bool,
    skip_missing: bool,
    outdir: Path | None,
    batch_size: int | None,
    quiet: bool,
    jobs: int | None,
    engine: str,
    address: str | None,
    actors: int | None,
    backend: str,
    precision: str,
) -> None:
    """Top-1 and top-5 of each net (and of their mean) on the original images and on their crops,
    as in the paper's Table IV. Originals and crops are squashed to the kernel with the same
    interpolation, so the difference measures the crop and nothing else.

    \b
    Examples:
      fcnx evaluate --nets inception_v3,xception --weights inception_v3=iv3.safetensors \\
                    --weights xception=xc.safetensors --data food-101/ --crops cropped/boxes.jsonl -o eval/
      fcnx evaluate --weights vgg19=vgg19.safetensors --data food-101/ --crops cropped/boxes.jsonl
      fcnx evaluate --engine ray --address auto --weights ... --data food-101/ --crop   # on a Ray cluster
    """
    from fcnx.errors import one_line
    from fcnx.jobs.evaluate import EvaluateOptions, run_evaluate

    names, weight_map, kernel = resolve_nets(nets, weights, kernel)
    options = EvaluateOptions(
        nets=names,
        weights=weight_map,
        kernel=kernel,
        split=split,
        crops=crops,
        crop=crop_now,
        skip_missing=skip_missing,
        batch_size=batch_size,
        device=device,
        engine="local" if is_local_engine(engine, address, actors) else "ray",
        address=address,
        actors=actors,
        jobs=jobs,
        backend=backend,
        precision=precision,
    )
    job = run_evaluate(data, options, outdir)
    announce("evaluate", job.warnings, len(job.pending), len(job.items), job.plan)
    bar = Progress(len(job.pending), "evaluate", quiet=quiet)
    try:
        result = job.run(progress=bar.update, report=lambda line: bar.say(f"error: {one_line(line)}"))
    except KeyboardInterrupt:
        if outdir is None:  # nothing journaled
            raise Interrupted("nothing is kept without -o; run the same command again") from None
        raise
    finally:
        bar.close()
    click.echo(_table(result.rows()))
    if job.without_box:
        click.echo(
            f"evaluate: {len(job.without_box)} image(s) without a box left out (--skip-missing), e.g. "
            f"{job.without_box[0].path}",
            err=True,
        )
    if result.skipped:
        where = f" (listed in {job.outdir / 'evaluation.json'})" if job.outdir is not None else ""
        click.echo(
            f"evaluate: {len(result.skipped)} image(s) skipped: unreadable, missing or without a box{where}; "
            f"the table counts the others",
            err=True,
        )
        raise SystemExit(1)
