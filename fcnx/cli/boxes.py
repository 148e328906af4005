"""``fcnx crop``'s ``--box`` (the paper's square window, the tight box of :mod:`fcnx.method.evidence` or the
fitted box of :mod:`fcnx.method.fitting`)
and ``--heatmaps-npy`` (score maps, :mod:`fcnx.jobs.maps`)."""

from __future__ import annotations

import click

from fcnx.method.boxes import DEFAULT, RULES

box_option = click.option(
    "--box",
    default=DEFAULT,
    show_default=True,
    type=click.Choice(list(RULES)),
    help="; ".join(f"{r.name}: {r.help}" for r in RULES.values())
    + " (docs/crop.md). boxes.jsonl/boxes.csv hold the window and the tight box besides the box cropped.",
)

instances_option = click.option(
    "--instances",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Up to this many boxes per category, from separate peaks of the evidence (non-maximum suppression), "
    "best first; each its own record (instance 1, 2, ...) with its score (mean_confidence) and crop.",
)

maps_option = click.option(
    "--heatmaps-npy",
    is_flag=True,
    help="Also write maps/<file>.npy: the found object's score map, float32 in [0, 1] at the image's upright "
    "size (the format of wsolevaluation; <file>.<category>.npy with several categories).",
)
