"""``fcnx suspects``: images the ensemble suggests are mislabelled (the paper's signal, or a graded one)."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from pathlib import Path

import click

from fcnx.cli.common import ensemble_options, resolve_nets
from fcnx.errors import UsageError
from fcnx.render.progress import Progress

THUMBNAIL = 192


def _thumbnail(path: Path, box: tuple[float, float, float, float]) -> str:
    """A small JPEG of the image with the ensemble's box drawn, as a data URI."""
    from PIL import ImageDraw

    from fcnx.io.images import open_upright

    with open_upright(path) as image:
        image = image.convert("RGB")
        x, y, w, h = box
        ImageDraw.Draw(image).rectangle([x, y, x + w, y + h], outline=(255, 40, 40), width=max(2, image.width // 100))
        image.thumbnail((THUMBNAIL, THUMBNAIL))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


#: what each signal means, for the page
SIGNAL_TEXT = {
    "paper": "No net finds the label at any scale",
    "graded": "The label is less likely than another class, anywhere in the image (largest gap first)",
}


def _page(suspects, root: Path, signal: str) -> str:
    cards = []
    for rank, s in enumerate(suspects, 1):
        gap = f", gap {s.gap:.2f}" if s.gap is not None else ""
        cards.append(
            f'<figure><img src="{_thumbnail(s.path, s.box)}" alt="">'
            f"<figcaption>#{rank} {html.escape(str(s.path.relative_to(root)) if s.path.is_relative_to(root) else str(s.path))}"
            f"<br>label <b>{html.escape(s.label)}</b>, nets see <b>{html.escape(s.other)}</b> "
            f"({s.other_votes} vote(s), p={s.other_confidence:.2f}{gap})</figcaption></figure>"
        )
    return (
        "<!doctype html><meta charset='utf-8'><title>fcnx suspects</title><style>body{font:14px sans-serif}"
        "figure{display:inline-block;width:200px;margin:6px;vertical-align:top}img{max-width:192px}</style>"
        f"<h1>{len(suspects)} suspected label(s) in {html.escape(str(root))}</h1>"
        f"<p>{SIGNAL_TEXT[signal]}; red: where the ensemble sees its own top class.</p>" + "".join(cards)
    )


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
    from fcnx.io.files import atomic_text, check_outdir
    from fcnx.jobs import evaluation
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
    buffer = io.StringIO()
    fields = ["path", "label", "other_category", "other_votes", "other_mean_confidence", "gap", "x", "y", "w", "h"]
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    atomic_text(out / "suspects.csv", buffer.getvalue())
    atomic_text(
        out / "suspects.json",
        json.dumps({"images": len(items), "signal": signal, "suspects": rows, "failures": failures}, indent=2),
    )
    atomic_text(out / "suspects.html", _page(suspects, Path(data).resolve(), signal))
    for s in suspects[:20]:
        click.echo(
            f"{s.path}: label {s.label!r}, nets see {s.other!r} ({s.other_votes} vote(s), p={s.other_confidence:.2f})"
        )
    click.echo(f"suspects: {len(suspects)} of {len(items)} image(s); see {out / 'suspects.html'}", err=True)
    if failures:
        for line in failures:
            click.echo(f"error: {line}", err=True)
        click.echo(
            f"suspects: {len(failures)} unreadable image(s) skipped (listed in {out / 'suspects.json'})", err=True
        )
        raise SystemExit(1)
