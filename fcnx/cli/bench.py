"""``fcnx bench``: benchmarks with ground truth. ``bench data`` writes the dataset, ``bench plant-mislabels``
a copy of it with wrong labels planted on a known share of test images."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from fcnx.cli.common import (
    MAX_SCALE,
    STEP,
    FiniteFloatRange,
    PathType,
    ensemble_options,
    parse_weights,
    resolve_nets,
    stoppable,
)
from fcnx.errors import UsageError
from fcnx.method import geometry

if TYPE_CHECKING:
    from fcnx.engine.cropper import Cropper
    from fcnx.engine.ensemble import Ensemble
    from fcnx.engine.options import CropOptions


@click.group("bench")
def bench_cmd() -> None:
    """Benchmarks with ground truth: localization, accuracy, mislabels."""


@bench_cmd.command("data")
@click.option(
    "-o",
    "--output",
    "out",
    required=True,
    type=PathType(path_type=Path, file_okay=False),
    help="New folder for the dataset (Food-101 layout plus boxes.json).",
)
@click.option("--seed", default=0, show_default=True, help="Random seed: same seed, same bytes.")
@click.option("--classes", "num_classes", default=10, show_default=True, help="Number of Fashion-MNIST classes.")
@click.option("--train-per-class", default=60, show_default=True)
@click.option("--test-per-class", default=20, show_default=True)
@click.option("--size", default=56, show_default=True, help="Training image side (the nets' kernel).")
@click.option(
    "--source",
    default=None,
    type=PathType(path_type=Path, file_okay=False),
    help="Folder of Fashion-MNIST's gzipped IDX files [default: /usr/share/datasets/fashion-mnist].",
)
@stoppable("bench data", "run the same command again")
def data_cmd(
    out: Path, seed: int, num_classes: int, train_per_class: int, test_per_class: int, size: int, source: Path | None
) -> None:
    """Write the benchmark dataset: centred training objects, cluttered test canvases with boxes."""
    from fcnx.bench import fashion

    cfg = fashion.BenchConfig(
        seed=seed, num_classes=num_classes, train_per_class=train_per_class, test_per_class=test_per_class, size=size
    )
    counts = fashion.generate(out, cfg, source or fashion.FASHION_MNIST)
    click.echo(f"{out}: {counts['train']} training images, {counts['test']} test canvases with boxes (seed {seed})")


@bench_cmd.command("plant-mislabels")
@click.argument("root", type=PathType(path_type=Path, exists=True, file_okay=False))
@click.option(
    "-o",
    "--output",
    "out",
    required=True,
    type=PathType(path_type=Path, file_okay=False),
    help="New folder for the copy with planted mislabels.",
)
@click.option("--share", default=0.1, show_default=True, help="Share of the split's images given a wrong label.")
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--split",
    default="test",
    show_default=True,
    type=click.Choice(["train", "test"]),
    help="Where to plant them: test canvases, or training images (to measure suspects among what nets train on).",
)
@stoppable("bench plant-mislabels", "run the same command again")
def plant_cmd(root: Path, out: Path, share: float, seed: int, split: str) -> None:
    """Copy a benchmark dataset, moving a share of its test (or training) images to a wrong class
    (meta/mislabels.json)."""
    from fcnx.bench import fashion

    planted = fashion.plant_mislabels(root, out, share, seed, split)
    click.echo(f"{out}: {len(planted)} {split} images mislabelled, listed in {out / 'meta' / 'mislabels.json'}")


#: the ensemble and held-out classifier of ``bench localization`` when --nets is not given: fcnx-tiny's shipped weights
BENCH_NETS = "tiny_vgg,tiny_resnet,tiny_inception"
BENCH_HELD_OUT = ("tiny_mobilenet",)


@bench_cmd.command("localization")
@click.option(
    "--data",
    "root",
    required=True,
    type=PathType(path_type=Path, exists=True, file_okay=False),
    help="Benchmark root from 'fcnx bench data' (test canvases and boxes.json).",
)
@click.option(
    "-o",
    "--output",
    "out",
    required=True,
    type=PathType(path_type=Path, file_okay=False),
    help="Folder for results.md, results.json and results.png.",
)
@ensemble_options
@click.option(
    "--held-out",
    "held_out",
    multiple=True,
    metavar="NET[=FILE]",
    help="A classifier outside the ensemble, scored on canvases and crops (the paper's VGG19 role). "
    f"Repeatable [default with the default nets: {', '.join(BENCH_HELD_OUT)}].",
)
@click.option(
    "--step", default=geometry.DEFAULT_STEP, show_default=True, type=STEP, help="Scale factor between pyramid levels."
)
@click.option(
    "--max-scale", default=4.0, show_default=True, type=MAX_SCALE, help="Largest pyramid level, relative to the first."
)
@click.option(
    "--mislabel-share",
    default=0.1,
    show_default=True,
    type=FiniteFloatRange(0, 1, max_open=True),
    help="Share of test images given a wrong label for the suspects test (0: skip it).",
)
@click.option("--seed", default=0, show_default=True, help="Seed of the random baseline and of the planted labels.")
@click.option("--check", is_flag=True, help="Exit with status 1 when a target is missed.")
@stoppable("bench localization", "run the same command again")
def localization_cmd(
    root: Path,
    out: Path,
    nets: str | None,
    weights: tuple[str, ...],
    kernel: int | str | None,
    device: str,
    held_out: tuple[str, ...],
    step: float,
    max_scale: float,
    mislabel_share: float,
    seed: int,
    check: bool,
    backend: str,
    precision: str,
) -> None:
    """Measure on ground truth: localization of the ensemble, single nets and baselines, top-1 on canvases
    vs crops (held-out classifier included), mislabel detection, paper vs votes-first, 1/2/3 nets.

    Without --nets and --weights: fcnx-tiny's shipped nets, the ensemble tiny_vgg, tiny_resnet and
    tiny_inception with tiny_mobilenet held out. See docs/benchmark.md.

    \b
      fcnx bench data -o bench/
      fcnx bench localization --data bench/ -o results/               # fcnx-tiny's shipped weights
      fcnx bench localization --data food/ --nets inception_v3,xception --weights inception_v3=iv3.safetensors \\
          --weights xception=xc.safetensors --held-out vgg19=vgg19.safetensors -o results/
    """
    import shlex
    from dataclasses import replace

    from fcnx.bench import localization, report
    from fcnx.engine.devices import resolve_device
    from fcnx.engine.options import CropOptions
    from fcnx.io.files import check_folder_path, claim_outputs

    check_folder_path(out)  # before the nets run, not when the results are written
    if nets is None and not weights:
        nets, held_out = BENCH_NETS, held_out or BENCH_HELD_OUT
    options = CropOptions(step=step, max_scale=max_scale, backend=backend, precision=precision)  # checked now
    names, weight_map, kernel = resolve_nets(nets, weights, kernel)
    extra = parse_weights(tuple(h if "=" in h else f"{h}=pretrained" for h in held_out))
    inside = sorted(set(extra) & set(names))
    if inside:
        raise UsageError(
            f"--held-out {inside[0]} is in the ensemble; a held-out classifier is a backbone outside --nets"
        )
    torch_device = resolve_device(device)
    options = replace(options, nets=names, weights=weight_map, kernel=kernel)
    cropper, classifiers = _load_nets(options, extra, torch_device)
    claim_outputs(out, report.FILES, "fcnx bench localization")  # before the canvases run, never over a user's file
    click.echo(
        f"bench: nets {', '.join(names)}, held out {', '.join(extra) or 'none'}, kernel {kernel}, {torch_device}",
        err=True,
    )
    results = localization.run(
        cropper, classifiers, root, mislabel_share=mislabel_share, seed=seed, progress=_progress_line
    )
    command = " ".join(
        ["fcnx bench localization --data", shlex.quote(str(root)), "--nets", ",".join(names)]
        + [f"--weights {shlex.quote(f'{n}={w}')}" for n, w in weight_map.items()]
        + [f"--held-out {shlex.quote(f'{n}={w}')}" for n, w in extra.items()]
        + [f"--kernel {kernel} --max-scale {max_scale} --step {step} -o", shlex.quote(str(out))]
    )
    for path in report.write(results, out, command):
        click.echo(f"wrote {path}", err=True)
    targets = results.targets()
    for text, ok in targets:
        click.echo(f"{'met   ' if ok else 'MISSED'} {text}")
    if check and not all(ok for _, ok in targets):
        raise SystemExit(1)


def _load_nets(options: CropOptions, extra: dict[str, str], device: Any) -> tuple[Cropper, Ensemble]:
    """The cropper of ``options``' ensemble, and the ensemble of its nets and the held-out classifiers ``extra``."""
    from fcnx.engine.cropper import Cropper
    from fcnx.engine.ensemble import load_ensemble

    o = options
    cropper = Cropper.from_options(o, device)
    nets, weights = [*o.nets, *extra], {**o.weights, **extra}
    classifiers = load_ensemble(nets, weights, kernel=o.kernel, device=device, backend=o.backend, precision=o.precision)
    if classifiers.classes != cropper.classes:
        raise UsageError("the held-out classifiers must have the ensemble's classes")
    return cropper, classifiers


def _progress_line(done: int, total: int) -> None:
    if done == total or done % 50 == 0:
        click.echo(f"bench: pyramids {done}/{total}", err=True)
