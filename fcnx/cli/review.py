"""``fcnx review``: review a crop or suspects run in the browser; decisions go to OUTDIR/review.jsonl."""

from __future__ import annotations

import getpass
import signal
from pathlib import Path

import click

from fcnx.cli.common import PathType


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _default_reviewer() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name for this uid (a container)
        return "reviewer"


@click.command("review")
@click.argument("outdir", type=PathType(path_type=Path, file_okay=False))
@click.option("--reviewer", default=None, help="Your name in review.jsonl [default: your user name].")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (loopback only by default).")
@click.option("--port", default=0, type=click.IntRange(0, 65535), help="Port to listen on [default: a free one].")
@click.option("--no-browser", is_flag=True, help="Only print the page's URL; do not open a browser.")
@click.option(
    "--classes",
    "classes_file",
    type=PathType(path_type=Path, dir_okay=False, exists=True),
    help="Class list (one a line) to relabel to [default: the dataset's meta/classes.txt in OUTDIR, else the run's "
    "labels and guesses].",
)
@click.option(
    "--merge",
    "merge_files",
    multiple=True,
    type=PathType(path_type=Path, dir_okay=False, exists=True),
    help="Merge another reviewer's review.jsonl into OUTDIR's (repeatable), list the disagreements and exit.",
)
def review_cmd(
    outdir: Path,
    reviewer: str | None,
    host: str,
    port: int,
    no_browser: bool,
    classes_file: Path | None,
    merge_files: tuple[Path, ...],
) -> None:
    """Review a crop or suspects run image by image in a local web page.

    Accept, reject (wrong label, not the category, unusable, crop only), relabel (to the ensemble's
    guess or any class), adjust the box by dragging it, undo: by keyboard. Each decision is appended at
    once to OUTDIR/review.jsonl; running the command again continues where it stopped.

    \b
    Examples:
      fcnx review crops/
      fcnx review review/ --reviewer ana --no-browser --port 8765
      fcnx review crops/ --merge ana/review.jsonl --merge bo/review.jsonl
    """
    from fcnx.errors import UsageError, one_line

    try:
        import flask  # noqa: F401
    except ImportError:
        raise UsageError("fcnx review needs Flask: pip install 'fcnx[review]'") from None
    from fcnx.review.index import open_index

    if merge_files:
        from fcnx.review.session import merge_files as merge

        open_index(outdir).close()  # refuse an OUTDIR that is neither crop nor suspects output
        lines, merged = merge(outdir, list(merge_files))
        for line in lines:
            click.echo(f"review: {one_line(line)}", err=True)
        for path, seen in merged.disagreements.items():
            views = "; ".join(f"{who}: {what}" for who, what in seen.items())
            click.echo(one_line(f"disagreement: {path}: {views}"))
        click.echo(
            f"review: {len(merged.verdicts)} image(s) with decisions, {len(merged.disagreements)} disagreement(s)",
            err=True,
        )
        return

    from fcnx.review.app import LOOPBACK, serve
    from fcnx.review.session import Session

    name = reviewer if reviewer is not None else _default_reviewer()
    index = open_index(outdir, classes_file)
    for warning in index.warnings:
        click.echo(f"review: warning: {one_line(warning)}", err=True)
    with Session(index, name) as session:
        for warning in session.warnings:
            click.echo(f"review: warning: {one_line(warning)}", err=True)
        counts = index.counts()

        if host not in LOOPBACK:
            click.echo(
                f"review: warning: listening on {one_line(host)}: whoever reaches it can see the images and "
                f"record decisions",
                err=True,
            )

        def ready(url: str) -> None:
            click.echo(
                f"review: {len(index)} image(s), {len(index) - counts['undecided']} decided; "
                f"decisions go to {session.path}",
                err=True,
            )
            click.echo(url)
            if not no_browser:
                import webbrowser

                webbrowser.open(url)

        signal.signal(signal.SIGTERM, _interrupt)  # a `kill` ends it as Ctrl-C does
        try:
            serve(session, host, port, ready)
        except KeyboardInterrupt:  # werkzeug's server ends on it by itself; before it serves, here
            pass
        click.echo("review: stopped; every decision is in review.jsonl", err=True)
