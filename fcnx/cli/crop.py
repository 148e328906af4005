"""``fcnx crop``: find a category with an FCN ensemble and crop images there, resumably."""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path, PurePosixPath
from typing import Any

import click

from fcnx.cli.boxes import box_option, box_setting, maps_option
from fcnx.cli.common import engine_options, ensemble_options, is_local_engine, resolve_nets
from fcnx.errors import FcnxError, UsageError
from fcnx.method.selection import RULES

SETTINGS_VERSION = 1
#: runs of at most this many images print one line per box
SHOW_BOXES_UP_TO = 20


def _box_line(record: dict[str, Any]) -> str:
    flag = "" if record["found"] else "  [found=false: no net finds it]"
    crop = f" -> {record['crop']}" if record.get("crop") else ""
    return (
        f"{record['file']}: {record['category']} at x={record['x']:.0f} y={record['y']:.0f} w={record['w']:.0f} "
        f"h={record['h']:.0f}, votes {record['votes']}/{record['nets']}, mean confidence "
        f"{record['mean_confidence']:.2f}, scale {record['scale']:.2f}{crop}{flag}"
    )


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _weights_identity(nets: list[str], weights: dict[str, str]) -> dict[str, str]:
    """Per net, what identifies its weights: a file's SHA-256 (shipped files too) or a hub tag."""
    from fcnx.backbones.registry import get_backbone
    from fcnx.engine.fcn import weight_file

    identity = {}
    for net in nets:
        value = weights.get(net, "pretrained")
        path = weight_file(get_backbone(net), value)
        identity[net] = f"sha256:{_file_digest(path)}" if path is not None and path.is_file() else f"tag:{value}"
    return identity


class _Progress:
    """A tqdm bar on a terminal, a plain line every ``every`` seconds otherwise, nothing when quiet."""

    def __init__(self, total: int, quiet: bool, every: float = 30.0) -> None:
        self.total, self.quiet, self.every = total, quiet, every
        self.count, self.start, self.last = 0, time.monotonic(), time.monotonic()
        self.bar = None
        if not quiet and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="img", desc="crop", file=sys.stderr, dynamic_ncols=True, smoothing=0.05)

    def update(self) -> None:
        self.count += 1
        if self.bar is not None:
            self.bar.update(1)
        elif not self.quiet and (time.monotonic() - self.last >= self.every or self.count == self.total):
            self.last = time.monotonic()
            click.echo(self.line(), err=True)

    def line(self) -> str:
        elapsed = time.monotonic() - self.start
        rate = self.count / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.count) / rate if rate > 0 else float("nan")
        eta_text = time.strftime("%H:%M:%S", time.gmtime(eta)) if eta == eta else "?"
        return f"crop: {self.count}/{self.total} images, {rate:.2f} img/s, ETA {eta_text}"

    def say(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            click.echo(text, err=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@click.command("crop")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    "outdir",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
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
    metavar="NAME|INDEX",
    help="Category to find (repeatable: one box per category). Default: each image's label (dataset "
    "roots), else the ensemble's top class.",
)
@click.option("--step", default=1.2, show_default=True, type=float, help="Scale factor between pyramid levels.")
@click.option(
    "--max-scale",
    default=3.0,
    show_default=True,
    type=float,
    help="Largest level, relative to the first (short side = kernel).",
)
@click.option(
    "--selection",
    default="paper",
    show_default=True,
    type=click.Choice(RULES),
    help="paper: per level the best summed probability; votes-first: the authors' code (votes, then sum).",
)
@click.option("--early-stop", is_flag=True, help="Stop an image's pyramid at the first level where every net votes.")
@box_option
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
    "compile_",
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
    help="Processes decoding images ahead of the nets [default: half the CPUs, at most 4].",
)
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
def crop_cmd(
    inputs: tuple[Path, ...],
    outdir: Path,
    nets: str | None,
    weights: tuple[str, ...],
    categories: tuple[str, ...],
    kernel: int | None,
    step: float,
    max_scale: float,
    selection: str,
    early_stop: bool,
    box: str,
    split: str,
    device: str,
    half: bool,
    batch_size: int | None,
    workers: int | None,
    dry_run: bool,
    heatmaps: bool,
    heatmaps_npy: bool,
    gallery: bool,
    quiet: bool,
    fail_fast: bool,
    in_place: bool,
    compile_: bool,
    profile: bool,
    engine: str,
    address: str | None,
    actors: int | None,
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
    import os

    from fcnx.engine.cropper import CropFailure, Cropper
    from fcnx.engine.devices import resolve_device
    from fcnx.engine.ensemble import load_ensemble
    from fcnx.engine.fcn import trained_size
    from fcnx.io import images
    from fcnx.io.files import check_outdir
    from fcnx.jobs.outputs import RESERVED, CropOutputs, entries, is_own_output

    net_names, weight_map, kernel = resolve_nets(nets, weights, kernel)
    if step <= 1.0:
        raise UsageError(f"--step must be > 1, got {step}")
    if max_scale < 1.0:
        raise UsageError(f"--max-scale must be >= 1, got {max_scale}")
    if workers is None:
        workers = min(4, (os.cpu_count() or 2) // 2)

    items = images.discover(inputs, split)
    own = 0
    if in_place:  # crops and heatmaps of an earlier run are outputs, not inputs
        real_out = Path(os.path.realpath(outdir))
        kept = [i for i, entry in zip(items, entries(i.path for i in items)) if not is_own_output(entry, real_out)]
        own, items = len(items) - len(kept), kept
    if not items:
        raise UsageError("no images found in " + ", ".join(str(p) for p in inputs))
    clash = next((i for i in items if i.rel.parts[0] in RESERVED or i.rel.parts[0].startswith("gallery-")), None)
    if clash is not None:
        raise UsageError(
            f"the output {clash.rel} would collide with fcnx's own files in OUTDIR ({', '.join(RESERVED)}); "
            f"give the folder that contains it as INPUT instead",
            clash.path,
        )
    out = check_outdir(outdir, list(inputs), in_place=in_place)

    local = is_local_engine(engine, address, actors)
    # the Ray engine's driver loads the nets on its CPU only for their classes and geometry
    torch_device = resolve_device(device if local else "cpu")
    ensemble = load_ensemble(
        net_names, weight_map, kernel=kernel, device=torch_device, half=half and local, compile=compile_ and local
    )
    ensemble.timed = profile
    for name in net_names:
        size = trained_size(name, weight_map.get(name, "pretrained"))
        if size is not None and size != kernel and not quiet:
            click.echo(
                f"warning: {name} was trained at {size} px and runs at kernel {kernel}; the paper fine-tunes "
                f"every net at the common kernel",
                err=True,
            )
    cropper = Cropper(
        ensemble,
        step=step,
        max_scale=max_scale,
        selection=selection,
        early_stop=early_stop,
        categories=list(categories) or None,
        batch_size=batch_size,
        workers=workers,
        keep_heatmaps=heatmaps or heatmaps_npy,
        box=box,
    )
    if cropper.categories is None:
        unknown = sorted({i.label for i in items if i.label is not None} - set(cropper.classes))
        if unknown:
            raise UsageError(
                f"{len(unknown)} dataset label(s) are not classes of the nets, e.g. "
                f"{', '.join(repr(u) for u in unknown[:3])}; pass --category to choose one"
            )

    settings: dict[str, Any] = {
        "version": SETTINGS_VERSION,
        "nets": net_names,
        "weights": _weights_identity(net_names, weight_map),
        "kernel": kernel,
        "step": step,
        "max_scale": max_scale,
        "selection": selection,
        "early_stop": early_stop,
        "categories": [cropper.classes[c] for c in cropper.categories] if cropper.categories else None,
        "half": half,
    }
    settings |= box_setting(box)
    if in_place:  # it changes the crops' names (absent otherwise, so OUTDIRs of earlier versions still resume)
        settings["in_place"] = True
    outputs = CropOutputs(
        out,
        settings,
        net_names=ensemble.names,
        kernel=ensemble.kernel,
        stride=ensemble.stride,
        expected_boxes=len(cropper.categories or [None]),
        crops=not dry_run,
        heatmaps=heatmaps,
        maps=heatmaps_npy,
        gallery=gallery,
        in_place=in_place,
        protected=[item.path for item in items],
    )
    outputs.open()
    pending = [item for item in items if not outputs.done(item)]
    base = images.output_base(list(inputs))
    meta_copies = []
    if not dry_run and not in_place:  # in place, the lists are there already (and name the originals)
        for root in (Path(os.path.abspath(p)) for p in inputs):
            if root.is_dir() and images.is_dataset_root(root):
                prefix = PurePosixPath(root.relative_to(base).as_posix())
                meta_copies += [(m, prefix / "meta" / m.name) for m in sorted((root / "meta").glob("*.txt"))]

    if not quiet:
        skipped = len(items) - len(pending)
        click.echo(
            f"crop: {len(pending)} image(s) to do"
            + (f", {skipped} already done" if skipped else "")
            + (f", {own} output(s) of fcnx crop in OUTDIR left out" if own else "")
            + f"; nets {', '.join(ensemble.names)} at kernel {kernel} "
            + (f"on {torch_device}" if local else "on a Ray cluster"),
            err=True,
        )
    progress = _Progress(len(pending), quiet)
    show_boxes = not quiet and len(pending) <= SHOW_BOXES_UP_TO
    failures: list[str] = []
    not_found = 0
    interrupted = False

    def settle(finished: list) -> None:
        nonlocal not_found
        for _, outcome in finished:
            if isinstance(outcome, FcnxError):
                failures.append(str(outcome))
                progress.say(f"error: {outcome}")
            else:
                not_found += sum(not r["found"] for r in outcome)
                if show_boxes:
                    for record in outcome:
                        progress.say(_box_line(record))
            progress.update()

    if local:
        results = cropper.crop_items(pending)
    else:
        from fcnx.engine.ray import CropperConfig, RayStats, crop_on_ray

        config = CropperConfig(
            tuple(net_names),
            weight_map,
            kernel,
            half=half,
            compile=compile_,
            options={
                "step": step,
                "max_scale": max_scale,
                "selection": selection,
                "early_stop": early_stop,
                "categories": list(categories) or None,
                "batch_size": batch_size,
                "keep_heatmaps": heatmaps or heatmaps_npy,
                "box": box,
            },
        )
        stats = RayStats()
        results = crop_on_ray(
            config, pending, address=address, device=device, actors=actors, timed=profile, stats=stats
        )
    start = time.perf_counter()
    try:
        for result in results:
            if isinstance(result, CropFailure):
                failures.append(result.error)
                progress.say(f"error: {result.error}")
                progress.update()
            else:
                settle(outputs.submit(result))
            if fail_fast and failures:
                break
        settle(outputs.flush())
    except KeyboardInterrupt:
        interrupted = True
    finally:
        results.close()
        progress.close()
    wall = time.perf_counter() - start
    outputs.finish(failures, meta_copies, order=items)
    if profile and not quiet:
        if local:
            click.echo(
                f"crop: forward passes {ensemble.forward_seconds:.1f} s of {wall:.1f} s wall "
                f"({100 * ensemble.forward_seconds / max(wall, 1e-9):.1f} %)",
                err=True,
            )
        else:
            click.echo(
                f"crop: forward passes {stats.forward_seconds:.1f} s in {stats.actors} "
                f"{'GPU' if stats.gpus else 'CPU'} actor(s): {100 * stats.forward_seconds / max(stats.busy_seconds, 1e-9):.1f} % "
                f"of the {stats.busy_seconds:.1f} s they spent cropping, {100 * stats.forward_seconds / max(wall * stats.actors, 1e-9):.1f} % "
                f"of their {wall:.1f} s wall (with the start of the cluster and actors)",
                err=True,
            )

    if not quiet:
        done = len(outputs.records)
        click.echo(
            f"crop: {done} box(es) in {out / 'boxes.jsonl'}" + ("" if dry_run else f"; crops in {out}"), err=True
        )
        if not_found:
            click.echo(
                f"crop: {not_found} box(es) with found=false: no net votes for the category at any scale "
                f"(likely mislabelled)",
                err=True,
            )
    if interrupted:
        click.echo("crop: interrupted; run the same command again to resume", err=True)
        raise SystemExit(130)
    if failures:
        click.echo(f"crop: {len(failures)} image(s) failed (listed in {out / 'failures.txt'}):", err=True)
        for line in failures[:20]:
            click.echo(f"  {line}", err=True)
        if len(failures) > 20:
            click.echo(f"  ... and {len(failures) - 20} more", err=True)
        if fail_fast:
            click.echo("crop: stopped at the first failure (--fail-fast)", err=True)
        raise SystemExit(1)
