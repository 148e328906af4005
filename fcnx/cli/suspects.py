"""``fcnx suspects``: images the ensemble suggests are mislabelled (the paper's signal, or a graded one)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from fcnx.cli.common import ensemble_options, resolve_nets
from fcnx.errors import UsageError
from fcnx.render.progress import Progress

#: what each signal means, for the page
SIGNAL_TEXT = {
    "paper": "No net finds the label at any scale",
    "graded": "The label is less likely than another class, anywhere in the image (largest gap first)",
}


@click.command("suspects")
@ensemble_options
@click.option(
    "--data",
    "data",
    required=True,
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    help="Dataset root: Food-101 layout or class folders (<class>/*.jpg).",
)
@click.option("--split", default="all", show_default=True, type=click.Choice(["train", "test", "all"]))
@click.option(
    "-o",
    "--output",
    "outdir",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder for suspects.csv, suspects.json and suspects.html.",
)
@click.option(
    "--signal",
    default="paper",
    show_default=True,
    type=click.Choice(list(SIGNAL_TEXT)),
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
def suspects_cmd(nets, weights, kernel, device, data, split, outdir, signal, top, quiet) -> None:
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
    """
    from fcnx.engine.cropper import Cropper
    from fcnx.engine.devices import resolve_device
    from fcnx.engine.ensemble import load_ensemble
    from fcnx.errors import one_line
    from fcnx.io.files import atomic_text, check_outdir
    from fcnx.io.tables import write_csv
    from fcnx.jobs import evaluation
    from fcnx.render.html import suspects_page
    from fcnx.training import datasets

    dataset = datasets.open_dataset(data, split)
    for warning in dataset.warnings:
        click.echo(f"suspects: warning: {warning}", err=True)
    items = dataset.items
    if not items:
        raise UsageError(f"no images in the {split} split", data)
    out = check_outdir(outdir, [data])
    names, weight_map, kernel = resolve_nets(nets, weights, kernel)
    cropper = Cropper(load_ensemble(names, weight_map, kernel=kernel, device=resolve_device(device)))
    unknown = sorted({i.label for i in items} - set(cropper.classes))
    if unknown:
        raise UsageError(f"label(s) {', '.join(map(repr, unknown[:3]))} are not classes of the nets", data)
    bar = Progress(len(items), "suspects", quiet=quiet)
    try:
        if signal == "graded" and top is None:
            top = max(1, round(0.05 * len(items)))
        suspects, failures = evaluation.find_suspects(cropper, items, progress=bar.update, signal=signal, top=top)
    finally:
        bar.close()
    failures += dataset.missing_lines
    rows = [s.as_dict() for s in suspects]
    fields = ["path", "label", "other_category", "other_votes", "other_mean_confidence", "gap", "x", "y", "w", "h"]
    write_csv(out / "suspects.csv", fields, rows)
    atomic_text(
        out / "suspects.json",
        json.dumps({"images": len(items), "signal": signal, "suspects": rows, "failures": failures}, indent=2),
    )
    atomic_text(out / "suspects.html", suspects_page(suspects, Path(data).resolve(), SIGNAL_TEXT[signal]))
    for s in suspects[:20]:
        click.echo(
            one_line(
                f"{s.path}: label {s.label!r}, nets see {s.other!r} ({s.other_votes} vote(s), "
                f"p={s.other_confidence:.2f})"
            )
        )
    click.echo(f"suspects: {len(suspects)} of {len(items)} image(s); see {out / 'suspects.html'}", err=True)
    if failures:
        for line in failures:
            click.echo(f"error: {one_line(line)}", err=True)
        click.echo(
            f"suspects: {len(failures)} unreadable image(s) skipped (listed in {out / 'suspects.json'})", err=True
        )
        raise SystemExit(1)
