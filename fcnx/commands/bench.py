"""``fcnx bench``: benchmarks with ground truth. ``bench data`` writes the dataset, ``bench plant-mislabels``
a copy of it with wrong labels planted on a known share of test images."""

from __future__ import annotations

from pathlib import Path

import click


@click.group("bench")
def bench_cmd() -> None:
    """Benchmarks with ground truth: localization, accuracy, mislabels."""


@bench_cmd.command("data")
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="New folder for the dataset (Food-101 layout plus boxes.json).")
@click.option("--seed", default=0, show_default=True, help="Random seed: same seed, same bytes.")
@click.option("--classes", "num_classes", default=10, show_default=True, help="Number of Fashion-MNIST classes.")
@click.option("--train-per-class", default=60, show_default=True)
@click.option("--test-per-class", default=20, show_default=True)
@click.option("--size", default=56, show_default=True, help="Training image side (the nets' kernel).")
@click.option("--source", default=None, type=click.Path(path_type=Path, file_okay=False),
              help="Folder of Fashion-MNIST's gzipped IDX files [default: /usr/share/datasets/fashion-mnist].")
def data_cmd(out: Path, seed: int, num_classes: int, train_per_class: int, test_per_class: int, size: int,
             source: Path | None) -> None:
    """Write the benchmark dataset: centred training objects, cluttered test canvases with boxes."""
    from fcnx import benchdata

    cfg = benchdata.BenchConfig(seed=seed, num_classes=num_classes, train_per_class=train_per_class,
                                test_per_class=test_per_class, size=size)
    counts = benchdata.generate(out, cfg, source or benchdata.FASHION_MNIST)
    click.echo(f"{out}: {counts['train']} training images, {counts['test']} test canvases with boxes (seed {seed})")


@bench_cmd.command("plant-mislabels")
@click.argument("root", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="New folder for the copy with planted mislabels.")
@click.option("--share", default=0.1, show_default=True, help="Share of test images given a wrong label.")
@click.option("--seed", default=0, show_default=True)
def plant_cmd(root: Path, out: Path, share: float, seed: int) -> None:
    """Copy a benchmark dataset, moving a share of its test images to a wrong class (meta/mislabels.json)."""
    from fcnx import benchdata

    planted = benchdata.plant_mislabels(root, out, share, seed)
    click.echo(f"{out}: {len(planted)} test images mislabelled, listed in {out / 'meta' / 'mislabels.json'}")
