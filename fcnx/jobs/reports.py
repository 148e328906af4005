"""What ``fcnx crop`` writes at the end of a run from its records: ``boxes.csv``, ``failures.txt``, the
gallery pages and the dataset lists of dataset-root inputs."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from fcnx.errors import one_line
from fcnx.io.files import atomic_bytes, atomic_text, read_regular
from fcnx.io.tables import write_csv
from fcnx.jobs.maps import BOX_COLUMNS, box_columns

TABLE = "boxes.csv"
FAILURES = "failures.txt"
GALLERY = "gallery.html"
#: the columns of ``boxes.csv`` before the per-net ``score:<net>`` and ``vote:<net>``
COLUMNS = [
    "file",
    "path",
    "label",
    "category",
    "category_index",
    "found",
    "votes",
    "nets",
    "confidence",
    "mean_confidence",
    "scale",
    "level",
    "cell_i",
    "cell_j",
    "x",
    "y",
    "w",
    "h",
    "x1",
    "y1",
    "x2",
    "y2",
    "crop",
    "heatmap",
]


def table_row(record: dict[str, Any], net_names: Sequence[str]) -> dict[str, Any]:
    """A journal record as a row of ``boxes.csv``."""
    row = {**record, "cell_i": record["cell"][0], "cell_j": record["cell"][1]}
    row.update({f"score:{n}": record["net_scores"].get(n) for n in net_names})
    row.update({f"vote:{n}": record["net_votes"].get(n) for n in net_names})
    return row | box_columns(record)


def write_table(outdir: Path, records: Iterable[dict[str, Any]], net_names: Sequence[str]) -> None:
    """``boxes.csv``: :data:`COLUMNS`, then each net's score and vote, then :data:`~fcnx.jobs.maps.BOX_COLUMNS`."""
    columns = COLUMNS + [f"score:{n}" for n in net_names] + [f"vote:{n}" for n in net_names] + BOX_COLUMNS
    write_csv(outdir / TABLE, columns, (table_row(r, net_names) for r in records))


def write_failures(outdir: Path, failures: Sequence[str]) -> None:
    """``failures.txt``: one line per failed image (removed when none failed)."""
    path = outdir / FAILURES
    if failures:
        atomic_text(path, "".join(f"{one_line(line)}\n" for line in failures))
    elif path.exists():
        path.unlink()


def write_gallery(
    outdir: Path, records: Iterable[dict[str, Any]], count: int, claim: Callable[[Iterable[str]], None]
) -> None:
    r"""``gallery.html`` (and ``gallery-2.html``...) of ``count`` records, each page's name ``claim``\ ed as fcnx's
    before it is written."""
    from fcnx.render.html import gallery_names, gallery_pages

    claim(gallery_names(count))
    for name, page in gallery_pages(records, count, outdir):  # one page in memory at a time
        atomic_text(outdir / name, page)


def copy_meta(outdir: Path, copies: Iterable[tuple[Path, PurePosixPath]]) -> None:
    """Copy dataset lists: ``(source, path in OUTDIR)``."""
    for source, rel in copies:
        atomic_bytes(outdir / rel, read_regular(source))
