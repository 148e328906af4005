"""``training.png``: loss and accuracy per epoch (matplotlib, drawn off-screen)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: series per panel: (metrics.csv column, legend, colour)
PANELS: dict[str, list[tuple[str, str, str]]] = {
    "loss": [("train_loss", "train", "tab:blue"), ("val_loss", "validation", "tab:red")],
    "accuracy": [
        ("train_top1", "train top-1", "tab:blue"),
        ("val_top1", "validation top-1", "tab:red"),
        ("val_top5", "validation top-5", "tab:orange"),
    ],
}
SIZE_INCHES, DPI = (11.2, 4.0), 100


def _values(rows: Sequence[dict[str, Any]], key: str) -> list[float]:
    """The column as floats, NaN where it is empty or not finite (matplotlib leaves a gap there)."""
    out = []
    for row in rows:
        value = row.get(key)
        number = float(value) if value not in (None, "") else math.nan
        out.append(number if math.isfinite(number) else math.nan)
    return out


def plot_history(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Save loss (left) and accuracy (right) per epoch of ``rows`` (metrics.csv rows) as a PNG at ``path``.

    A dashed line marks where a new training step (more layers unfrozen) begins.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    from fcnx.io.files import atomic_write

    figure = Figure(figsize=SIZE_INCHES, dpi=DPI, layout="constrained")
    epochs = list(range(1, len(rows) + 1))
    steps = [i + 0.5 for i in range(1, len(rows)) if rows[i].get("step") != rows[i - 1].get("step")]
    for axes, (title, series) in zip(figure.subplots(1, 2), PANELS.items()):
        for key, legend, colour in series:
            axes.plot(epochs, _values(rows, key), marker="o", markersize=4, color=colour, label=legend)
        for x in steps:
            axes.axvline(x, color="grey", linestyle="--", linewidth=1)
        axes.set_title(title)
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(axis="y", color="0.92")
        if title == "accuracy":
            axes.set_ylim(0, 1)
            axes.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        else:
            axes.set_ylim(bottom=0)
        axes.legend(loc="best", fontsize="small")
    path = Path(path)
    atomic_write(path, lambda f: figure.savefig(f, format="png"))
    return path
