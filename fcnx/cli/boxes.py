"""``fcnx crop``'s ``--box`` (the paper's square window or the tight box, :mod:`fcnx.method.evidence`)
and ``--heatmaps-npy`` (score maps, :mod:`fcnx.jobs.maps`)."""

from __future__ import annotations

import click

from fcnx.method.evidence import BOXES, DEFAULT_BOX

box_option = click.option(
    "--box",
    default=DEFAULT_BOX,
    show_default=True,
    type=click.Choice(BOXES),
    help="tight: a box of any aspect fitted to the nets' class maps over the pyramid (docs/crop.md); "
    "square: the paper's kernel window (the paper's crop). boxes.jsonl/boxes.csv hold both.",
)

maps_option = click.option(
    "--heatmaps-npy",
    is_flag=True,
    help="Also write maps/<file>.npy: the found object's score map, float32 in [0, 1] at the image's upright "
    "size (the format of wsolevaluation; <file>.<category>.npy with several categories).",
)
