"""The ``--box`` option of ``fcnx crop``: the paper's square window or the tight box (:mod:`fcnx.method.evidence`)."""

from __future__ import annotations

from typing import Any

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


def box_setting(box: str) -> dict[str, Any]:
    """The settings entry of ``box``: none for ``square``, so OUTDIRs made before ``--box`` existed still resume."""
    return {} if box == "square" else {"box": box}
