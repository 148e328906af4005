"""``fcnx evaluate``: top-1/top-5 of each net on the original test images and on their crops."""

from __future__ import annotations

import json
from pathlib import Path

import click

from fcnx.cli.common import engine_options, ensemble_options, is_local_engine, resolve_nets
from fcnx.errors import FcnxError, UsageError
from fcnx.render.progress import Progress
from fcnx.render.text import text_table


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
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    help="Dataset root: Food-101 layout (images/<class>/..., meta/classes.txt, meta/{train,test}.txt) "
    "or class folders (<class>/*.jpg, optionally under train/ and test/).",
)
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "test", "all"]))
@click.option(
    "--crops",
    "crops",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
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
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder for evaluation.csv and evaluation.json.",
)
@click.option(
    "--batch-size",
    default=None,
    type=click.IntRange(min=1),
    help="Originals and crops classified together (all are squashed to the kernel first; the scores do "
    "not depend on it) [default: 8 on a GPU, 1 on the CPU].",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@engine_options
def evaluate_cmd(
    nets,
    weights,
    kernel,
    device,
    data,
    split,
    crops,
    crop_now,
    skip_missing,
    outdir,
    batch_size,
    quiet,
    engine,
    address,
    actors,
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
    from fcnx.engine.devices import resolve_device
    from fcnx.engine.ensemble import load_ensemble
    from fcnx.errors import one_line
    from fcnx.io.files import atomic_text, check_outdir
    from fcnx.io.tables import write_csv
    from fcnx.jobs import evaluation
    from fcnx.training import datasets

    if crops and crop_now:
        raise UsageError("give --crops FILE or --crop, not both")
    if skip_missing and not crops:
        raise UsageError("--skip-missing goes with --crops FILE")
    local = is_local_engine(engine, address, actors)
    dataset = datasets.open_dataset(data, split)
    for warning in dataset.warnings:
        click.echo(f"evaluate: warning: {warning}", err=True)
    items = dataset.items
    if not items:
        raise UsageError(f"no images in the {split} split", data)
    boxes, box_of = None, None
    without_box: list = []
    if crops:
        boxes = evaluation.read_boxes(crops)
        for warning in boxes.warnings:
            click.echo(f"evaluate: warning: {warning}", err=True)
        without_box = [item for item in items if boxes.find(item) is None]
        if len(without_box) == len(items):
            raise UsageError(
                f"none of the {len(items)} images of the {split} split has a box in it: crop the same split first",
                crops,
            )
        if skip_missing:
            items = [item for item in items if boxes.find(item) is not None]
        else:  # each is reported as it is met, skipped on both sides, and the run exits with 1
            without_box = []
        box_of = lambda item, pixels: boxes.find(item)  # noqa: E731
    if outdir is not None:
        outdir = check_outdir(outdir, [data])
    names, weight_map, kernel = resolve_nets(nets, weights, kernel)
    # the Ray engine's driver loads the nets on its CPU only for their names and classes
    ensemble = load_ensemble(names, weight_map, kernel=kernel, device=resolve_device(device if local else "cpu"))
    unknown = [c for c in dataset.classes if c not in ensemble.classes]
    if unknown:
        raise UsageError(
            f"{len(unknown)} of the dataset's {len(dataset.classes)} classes are not classes of the nets "
            f"(e.g. {', '.join(map(repr, unknown[:3]))}): weights trained on another class list?",
            data,
        )
    if crop_now:
        from fcnx.engine.cropper import Cropper

        box_of = evaluation.crops_of(Cropper(ensemble))

    for line in dataset.missing_lines:
        click.echo(f"error: {one_line(line)}", err=True)
    bar = Progress(len(items), "evaluate", quiet=quiet)

    def report(line: str) -> None:
        bar.say(f"error: {one_line(line)}")

    try:
        if local:
            result = evaluation.evaluate(
                ensemble,
                items,
                box_of,
                progress=bar.update,
                report=report,
                batch_size=batch_size or (1 if ensemble.device.type == "cpu" else 8),
            )
        else:
            from fcnx.jobs.ray import CropperConfig, evaluate_on_ray

            result = evaluate_on_ray(
                CropperConfig(tuple(names), weight_map, kernel),
                items,
                boxes=boxes,
                crop=crop_now,
                batch_size=batch_size,
                address=address,
                device=device,
                actors=actors,
                progress=bar.update,
                report=report,
            )
    finally:
        bar.close()
    result.skipped += dataset.missing_lines
    if all(scores.total == 0 for scores in result.original.values()):
        raise FcnxError(f"no image could be scored ({len(result.skipped)} skipped, e.g. {result.skipped[0]})", data)
    rows = result.rows()
    click.echo(_table(rows))
    if without_box:
        click.echo(
            f"evaluate: {len(without_box)} image(s) without a box left out (--skip-missing), e.g. "
            f"{without_box[0].path}",
            err=True,
        )
    if outdir is not None:
        write_csv(outdir / "evaluation.csv", list(rows[0]), rows)
        atomic_text(
            outdir / "evaluation.json",
            json.dumps(
                {
                    "split": split,
                    "kernel": kernel,
                    "rows": rows,
                    "skipped": result.skipped,
                    "without_box": [str(i.path) for i in without_box],
                },
                indent=2,
            ),
        )
    if result.skipped:
        where = f" (listed in {outdir / 'evaluation.json'})" if outdir is not None else ""
        click.echo(
            f"evaluate: {len(result.skipped)} image(s) skipped: unreadable, missing or without a box{where}; "
            f"the table counts the others",
            err=True,
        )
        raise SystemExit(1)
