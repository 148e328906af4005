"""What ``fcnx crop`` writes at the end of a run from its records: ``boxes.csv``, ``failures.txt``, the
gallery pages and the dataset lists of dataset-root inputs."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path, PurePosixPath

from fcnx.errors import one_line
from fcnx.io.files import atomic_bytes, atomic_text, read_regular
from fcnx.io.record import CropRecord, Json
from fcnx.io.tables import write_csv

TABLE = "boxes.csv"
FAILURES = "failures.txt"
GALLERY = "gallery.html"


def write_table(outdir: Path, records: Iterable[Json], net_names: Sequence[str]) -> None:
    """``boxes.csv``: a row per record (:meth:`~fcnx.io.record.CropRecord.csv_row`) under
    :meth:`~fcnx.io.record.CropRecord.csv_columns`."""
    nets = list(net_names)
    rows = (CropRecord.from_json(r).csv_row(nets) for r in records)
    write_csv(outdir / TABLE, CropRecord.csv_columns(nets), rows)


def write_failures(outdir: Path, failures: Sequence[str]) -> None:
    """``failures.txt``: one line per failed image (removed when none failed)."""
    path = outdir / FAILURES
    if failures:
        atomic_text(path, "".join(f"{one_line(line)}\n" for line in failures))
    elif path.exists():
        path.unlink()


def write_gallery(outdir: Path, records: Iterable[Json], count: int, claim: Callable[[Iterable[str]], None]) -> None:
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
