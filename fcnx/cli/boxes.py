"""``fcnx crop``'s ``--box`` (the paper's square window, the tight box of :mod:`fcnx.method.evidence` or the
fitted box of :mod:`fcnx.method.fitting`)
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
    "square: the paper's kernel window (the paper's crop); fitted: the tight box snapped to the object's "
    "pixels by GrabCut (objects that stand out from their background; needs pip install 'fcnx[fit]'). "
    "boxes.jsonl/boxes.csv hold the window and the tight box, and the fitted box when asked for.",
)

maps_option = click.option(
    "--heatmaps-npy",
    is_flag=True,
    help="Also write maps/<file>.npy: the found object's score map, float32 in [0, 1] at the image's upright "
    "size (the format of wsolevaluation; <file>.<category>.npy with several categories).",
)
