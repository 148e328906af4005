"""``fcnx apply`` and ``fcnx import-labelstudio``: reviewers' decisions into a cleaned dataset, or into review.jsonl."""

from __future__ import annotations

from pathlib import Path

import click

from fcnx.cli.common import PathType
from fcnx.jobs.apply import UNREVIEWED


@click.command("apply")
@click.argument("outdir", type=PathType(path_type=Path, exists=True, file_okay=False))
@click.option(
    "-o",
    "--output",
    "dest",
    required=True,
    type=PathType(path_type=Path, file_okay=False),
    help="The cleaned dataset's folder: new, empty, or an earlier apply's (its files are replaced).",
)
@click.option(
    "--decisions",
    "decision_files",
    multiple=True,
    type=PathType(path_type=Path, exists=True, dir_okay=False),
    help="A reviewer's review.jsonl to merge with OUTDIR/review.jsonl (repeatable; the latest decision per "
    "image wins, disagreements are listed).",
)
@click.option(
    "--labelstudio",
    "exports",
    multiple=True,
    type=PathType(path_type=Path, exists=True, dir_okay=False),
    help="A Label Studio JSON export whose annotations are decisions too (repeatable).",
)
@click.option(
    "--unreviewed",
    default="crop",
    show_default=True,
    type=click.Choice(UNREVIEWED),
    help="Images nobody decided on: cropped as the run cut them, kept uncropped, or left out.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def apply_cmd(
    outdir: Path, dest: Path, decision_files: tuple[Path, ...], exports: tuple[Path, ...], unreviewed: str, quiet: bool
) -> None:
    """Write the cleaned dataset of a crop run OUTDIR and its reviewers' decisions (OUTDIR/review.jsonl).

    The dataset the run cropped is written anew in its own layout (a Food-101 root or class
    folders): accepted crops (the reviewer's box where adjusted), the original where the crop was
    rejected, relabelled images under their new class, rejected images left out and listed with their
    reason in excluded.txt; a summary per class and decision in apply-summary.json. The source and
    OUTDIR are never written to; a rerun writes the same bytes.

    \b
    Examples:
      fcnx apply cropped/ -o food-101-clean/
      fcnx apply cropped/ --decisions ana.jsonl --decisions bo.jsonl --unreviewed original -o clean/
      fcnx apply cropped/ --labelstudio project-1-export.json -o clean/
    """
    from fcnx.cli.progress import Progress
    from fcnx.errors import one_line
    from fcnx.jobs.apply import SUMMARY, apply, describe

    bar: list[Progress] = []

    def start(total: int) -> None:
        bar.append(Progress(total, "apply", quiet=quiet))

    try:
        applied = apply(
            outdir,
            dest,
            unreviewed=unreviewed,
            decisions=decision_files,
            exports=exports,
            start=start,
            progress=lambda n: bar[0].update(n),
        )
    finally:
        for b in bar:
            b.close()
    for line in applied.warnings:
        click.echo(f"apply: warning: {one_line(line)}", err=True)
    for path, seen in list(applied.merged.disagreements.items())[:10]:
        click.echo(
            one_line(f"apply: reviewers disagree on {path}: " + "; ".join(f"{r}: {v}" for r, v in seen.items())),
            err=True,
        )
    if len(applied.merged.disagreements) > 10:
        click.echo(f"apply: {len(applied.merged.disagreements)} disagreements in all (see {SUMMARY})", err=True)
    for line in describe(applied):
        click.echo(line)
    click.echo(
        one_line(
            f"apply: {applied.written} of {len(applied.plan)} image(s) in {len(applied.classes)} classes written to "
            f"{dest} ({applied.layout}); see {dest / SUMMARY}"
        )
    )
    if applied.errors:
        for line in applied.errors:
            click.echo(f"error: {one_line(line)}", err=True)
        click.echo(f"apply: {len(applied.errors)} unreadable image(s) left out", err=True)
        raise SystemExit(1)


@click.command("import-labelstudio")
@click.argument("outdir", type=PathType(path_type=Path, exists=True, file_okay=False))
@click.argument("export", type=PathType(path_type=Path, exists=True, dir_okay=False))
def import_labelstudio_cmd(outdir: Path, export: Path) -> None:
    """Append the annotations of a Label Studio JSON EXPORT to OUTDIR/review.jsonl as decisions.

    Rectangles become boxes in original pixels, another rectangle label or class choice a relabel,
    a verdict choice an accept or a reject; the reviewer is the annotation's completed_by. Tasks are
    matched to the run's images by path (data.fcnx_path, else data.image), never by position; tasks
    naming images the run does not have are listed and skipped. Importing twice appends nothing.

    \b
    Example:
      fcnx import-labelstudio cropped/ project-1-at-2026-12-07.json && fcnx apply cropped/ -o clean/
    """
    from fcnx.errors import one_line
    from fcnx.jobs.apply import import_labelstudio

    appended, imported = import_labelstudio(outdir, export)
    for line in imported.skipped:
        click.echo(f"import-labelstudio: {one_line(line)}", err=True)
    click.echo(
        one_line(
            f"import-labelstudio: {imported.matched} task(s) matched, {len(imported.decisions)} decision(s) read, "
            f"{appended} appended to {outdir / 'review.jsonl'}, {len(imported.skipped)} skipped"
        )
    )
