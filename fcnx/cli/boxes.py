"""``fcnx crop``'s ``--box`` (the paper's square window or the tight box, :mod:`fcnx.method.evidence`)
and ``--heatmaps-npy`` (score maps, :mod:`fcnx.jobs.maps`)."""

from __future__ import annotations

import click

from fcnx.method.evidence import BOXES

#: the box ``fcnx crop`` writes unless told otherwise
DEFAULT_BOX = "square"

box_option = click.option(
    "--box",
    default=DEFAULT_BOX,
    show_default=True,
    type=click.Choice(BOXES),
    help="square: the paper's kernel window (the paper's crop); tight: a box of any aspect fitted to the "
    "ensemble's evidence over the pyramid (docs/crop.md). boxes.jsonl/boxes.csv hold both.",
)

maps_option = click.option(
    "--heatmaps-npy",
    is_flag=True,
    help="Also write maps/<file>.npy: the found object's score map, float32 in [0, 1] at the image's upright "
    "size (the format of wsolevaluation; <file>.<category>.npy with several categories).",
)
