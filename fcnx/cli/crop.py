"""``fcnx crop``: find a category with an FCN ensemble and crop images there, resumably."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from fcnx.cli.boxes import box_option, instances_option, maps_option
from fcnx.cli.common import (
    STEP,
    CategoryType,
    MaxScaleType,
    PathType,
    engine_options,
    ensemble_options,
    jobs_option,
    processes,
    resolve_nets,
    stoppable,
)
from fcnx.cli.progress import Progress
from fcnx.method import geometry
from fcnx.method.selection import DEFAULT_RULE, RULES

if TYPE_CHECKING:
    from fcnx.engine.ensemble import Ensemble
    from fcnx.io.record import CropRecord
    from fcnx.jobs.crop import CropJob, CropSummary

#: runs of at most this many images print one line per box
SHOW_BOXES_UP_TO = 20


def _box_line(record: CropRecord) -> str:
    """One box: the pixels its crop is cut from (rounded as the crop is, at least one a side), votes, confidence."""
    from fcnx.method.geometry import pixel_box

    r = record
    flag = "" if r.found else "  [found=false: no net finds it]"
    crop = f" -> {r.crop}" if r.crop else ""
    x1, y1, x2, y2 = pixel_box((r.x, r.y, r.w, r.h), (r.height, r.width))
    return (
        f"{r.file}: {r.category} at x={x1} y={y1} w={x2 - x1} h={y2 - y1}, votes {r.votes}/{r.nets}, mean confidence "
        f"{r.mean_confidence:.2f}, scale {r.scale:.2f}{crop}{flag}"
    )


@click.command("crop")
@click.argument("inputs", nargs=-1, required=True, type=PathType(path_type=Path))
@click.option(
    "-o",
    "--output",
    "outdir",
    required=True,
    type=PathType(path_type=Path, file_okay=False),
    help="Output folder (must not overlap an input, unless --in-place).",
)
@click.option(
    "--in-place",
    is_flag=True,
    help="Allow OUTDIR to be an input folder or inside one: crops are written beside the originals as "
    "<name>.fcnx-crop.<ext> (originals are never written) and are never taken as inputs.",
)
@ensemble_options
@click.option(
    "--category",
    "categories",
    multiple=True,
    type=CategoryType(),
    metavar="NAME|INDEX",
    help="Category to find (repeatable: one box per category). Default: each image's label (dataset "
    "roots), else the ensemble's top class.",
)
@click.option(
    "--step", default=geometry.DEFAULT_STEP, show_default=True, type=STEP, help="Scale factor between pyramid levels."
)
@click.option(
    "--max-scale",
    default=geometry.DEFAULT_MAX_SCALE,
    show_default=True,
    type=MaxScaleType(),
    help="Largest level, relative to the first (short side = kernel); levels past the image's own "
    "resolution are upsampled. auto (small objects): on until the window is about 10% of the short "
    "side, but no level over 8x the decoded image's short side and at most 32 Mpixels summed over "
    "levels per image (13 levels at step 1.2: 10-15x the time of 3).",
)
@click.option(
    "--selection",
    default=DEFAULT_RULE,
    show_default=True,
    type=click.Choice(RULES),
    help="paper: per level the best summed probability; votes-first: the authors' code (votes, then sum).",
)
@click.option("--early-stop", is_flag=True, help="Stop an image's pyramid at the first level where every net votes.")
@box_option
@instances_option
@click.option(
    "--split",
    default="all",
    show_default=True,
    type=click.Choice(["all", "train", "test"]),
    help="Which meta list of a Food-101-style dataset root to crop.",
)
@click.option("--half", is_flag=True, help="Run the nets in float16 (CUDA/MPS autocast).")
@click.option(
    "--compile",
    is_flag=True,
    help="torch.compile the nets (dynamic shapes): faster on a GPU once compiled; the first images pay.",
)
@click.option(
    "--batch-size",
    default=None,
    type=click.IntRange(min=1),
    help="Images of one size run through the nets together [default: 8 on a GPU, 1 on the CPU].",
)
@click.option(
    "--workers",
    default=None,
    type=click.IntRange(min=0),
    help="Processes decoding images ahead of the nets, with --jobs 1 (worker processes of --jobs decode their "
    "own) [default: half the CPUs, at most 4].",
)
@jobs_option
@click.option("--dry-run", is_flag=True, help="Write only boxes.jsonl/boxes.csv, no crop images.")
@click.option("--heatmaps", is_flag=True, help="Also write heatmaps/<file>.png: the summed heatmap and the box.")
@maps_option
@click.option("--gallery", is_flag=True, help="Also write gallery.html: originals with their boxes beside the crops.")
@click.option("--quiet", "-q", is_flag=True, help="No progress or summary; errors only.")
@click.option("--fail-fast", is_flag=True, help="Stop at the first image that fails.")
@click.option(
    "--profile",
    is_flag=True,
    help="Print the share of time spent in the nets' forward passes (synchronises the GPU around them).",
)
@engine_options
@stoppable("crop")
def crop_cmd(
    inputs: tuple[Path, ...],
    outdir: Path,
    nets: str | None,
    weights: tuple[str, ...],
    kernel: int | str | None,
    quiet: bool,
    **fields: Any,
) -> None:
    """Crop images where an ensemble of FCNs finds a category.

    INPUT is image files, folders (searched recursively) or Food-101-style dataset roots
    (images/<class>/<id>.jpg with meta/classes.txt and meta/{train,test}.txt; each image is
    cropped for its own label). OUTDIR receives the crops (same format, mirrored folders),
    boxes.jsonl and boxes.csv. Running the same command again resumes where it stopped.
    With --in-place OUTDIR may be the INPUT folder itself: each crop lands beside its original.

    \b
    Examples:
      fcnx crop --category espresso coffee.jpg -o out/      # offline EfficientNet-Lite ensemble
      fcnx crop --nets inception_v3,xception --weights inception_v3=iv3.safetensors \\
                --weights xception=xc.safetensors food-101/ -o food-101-cropped/
      fcnx crop --nets resnet50 --category "golden retriever" --heatmaps --gallery dogs/ -o out/
      fcnx crop --category espresso --in-place photos/ -o photos/   # photos/x.jpg -> photos/x.fcnx-crop.jpg
      fcnx crop --engine ray --address auto --weights ... food-101/ -o cropped/   # on a Ray cluster
    """
    from fcnx.jobs.crop import CropOptions, run_crop

    net_names, weight_map, kernel = resolve_nets(nets, weights, kernel)
    options = CropOptions(nets=net_names, weights=weight_map, kernel=kernel, **fields)
    if options.engine == "ray":
        from fcnx.jobs.ray import import_ray

        import_ray()  # refuse early when Ray is not installed
    job = run_crop(inputs, outdir, options)
    if not quiet:
        _announce(job)
    _follow(job, quiet=quiet)
    _report(job.summary, job.out, quiet=quiet, dry_run=options.dry_run, profile=options.profile, local=job.local)


def _announce(job: CropJob) -> None:
    """The start of a run on stderr: its warnings, then what it will do and where the nets run."""
    from fcnx.errors import one_line

    summary = job.summary
    for warning in job.warnings:
        click.echo(f"warning: {one_line(warning)}", err=True)
    click.echo(
        one_line(
            f"crop: {summary.pending} image(s) to do"
            + (f", {summary.skipped} already done" if summary.skipped else "")
            + (f", {summary.own_outputs} output(s) of fcnx crop in OUTDIR left out" if summary.own_outputs else "")
            + f"; nets {', '.join(job.ensemble.names)} at {_kernels(job.ensemble)} "
            + (
                f"on {job.device} with {job.runs_on}{'' if job.plan.jobs == 1 else ', ' + processes(job.plan)}"
                if job.local
                else "on a Ray cluster"
            )
        ),
        err=True,
    )


def _follow(job: CropJob, *, quiet: bool) -> None:
    """Run the job with a progress bar, saying each image's error (and its boxes, for a few images);
    Ctrl-C stops it cleanly."""
    from fcnx.errors import one_line

    progress = Progress(job.summary.pending, "crop", quiet=quiet)
    show_boxes = not quiet and job.summary.pending <= SHOW_BOXES_UP_TO
    try:
        for image in job:
            if image.error is not None:
                progress.say(f"error: {one_line(image.error)}")
            elif show_boxes:
                for record in image.records or []:
                    progress.say(one_line(_box_line(record)))
            progress.update()
    except KeyboardInterrupt as exc:
        job.stop(exc)
    finally:
        progress.close()


def _report(summary: CropSummary, out: Path, *, quiet: bool, dry_run: bool, profile: bool, local: bool) -> None:
    """The end of a run: profile, summary lines, how to resume, the exit code."""
    from fcnx.errors import one_line

    def say(text: str) -> None:
        click.echo(one_line(text), err=True)

    wall = summary.wall
    if profile and not quiet:
        if local:
            say(
                f"crop: forward passes {summary.forward_seconds:.1f} s of {wall:.1f} s wall"
                + (f" x {summary.jobs} processes" if summary.jobs > 1 else "")
                + f" ({100 * summary.forward_seconds / max(wall * summary.jobs, 1e-9):.1f} %)"
            )
        else:
            ray = summary.ray or {}
            say(
                f"crop: forward passes {summary.forward_seconds:.1f} s in {ray['actors']} "
                f"{'GPU' if ray['gpus'] else 'CPU'} actor(s): {100 * summary.forward_seconds / max(ray['busy_seconds'], 1e-9):.1f} % "
                f"of the {ray['busy_seconds']:.1f} s they spent cropping, {100 * summary.forward_seconds / max(wall * ray['actors'], 1e-9):.1f} % "
                f"of their {wall:.1f} s wall (with the start of the cluster and actors)"
            )
    if profile and not quiet:
        say("crop: stages " + ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in summary.seconds.items()))
    for line in summary.write_errors:
        say(f"error: {line}")
    if not quiet:
        say(f"crop: {summary.boxes} box(es) in {out / 'boxes.jsonl'}" + ("" if dry_run else f"; crops in {out}"))
        if summary.not_found:
            say(
                f"crop: {summary.not_found} box(es) with found=false: no net votes for the category at any scale "
                f"(likely mislabelled)"
            )
    if summary.stopped is not None:
        how = "interrupted" if summary.stopped.name == "SIGINT" else f"stopped by {summary.stopped.name}"
        say(f"crop: {how}; run the same command again to resume")
        raise SystemExit(128 + summary.stopped.value)
    if summary.disk_full:
        say("crop: the disk is full; free some space and run the same command again to resume")
        raise SystemExit(1)
    failures = summary.failures
    if failures or summary.write_errors:
        if failures:
            say(f"crop: {len(failures)} image(s) failed (listed in {out / 'failures.txt'}):")
        for line in failures[:20]:
            say(f"  {line}")
        if len(failures) > 20:
            say(f"  ... and {len(failures) - 20} more")
        if summary.fail_fast:
            say("crop: stopped at the first failure (--fail-fast)")
        raise SystemExit(1)


def _kernels(ensemble: Ensemble) -> str:
    """``kernel 224``, or for a mixed ensemble every net's: ``kernels 224, 240, 260``."""
    if not ensemble.mixed:
        return f"kernel {ensemble.kernel}"
    return "kernels " + ", ".join(str(f.kernel) for f in ensemble.fcns)
