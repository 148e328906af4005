"""``fcnx crop``'s ``--box`` (a rule of :data:`fcnx.method.boxes.RULES`: the paper's square window, the tight,
fitted, object or fitted-object box)
and ``--heatmaps-npy`` (score maps, :mod:`fcnx.jobs.outdir.maps`)."""

from __future__ import annotations

import click

from fcnx.method.boxes import DEFAULT, RULES


class RuleChoice(click.Choice[str]):
    """The names in :data:`~fcnx.method.boxes.RULES` as click's choices, read each time they are used: a rule
    registered after import (a plugin, a test) is offered (click's own ``Choice`` keeps a copy)."""

    def __init__(self) -> None:
        super().__init__(())

    @property
    def choices(self) -> tuple[str, ...]:
        return tuple(RULES)

    @choices.setter
    def choices(self, value: object) -> None:
        """Ignored: the table is the one list."""


box_option = click.option(
    "--box",
    default=DEFAULT,
    show_default=True,
    type=RuleChoice(),
    help="; ".join(f"{r.name}: {r.help}" for r in RULES.values())
    + ". Which to pick: the default for training crops and ordinary photos (it keeps >= 90 % of the object on "
    "83 % of held-out real photos); fitted for the tightest box on objects that stand out; square for the "
    "paper's crop (docs/crop.md). boxes.jsonl/boxes.csv hold the window and the tight box besides the box cropped.",
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
