"""Suspects in sample vs out of sample: wrong labels planted among the TRAINING images, found by an ensemble
trained on all of them (``fcnx train --nets``) or by K fold models, each image judged by the one that did
not train on it (``fcnx train --folds K``, ``fcnx suspects --folds``).

The data is the Fashion-MNIST benchmark (``fcnx bench data``: centred objects on photo backgrounds at the
tiny nets' kernel, 56 px; needs Debian's ``dataset-fashion-mnist``) with ``--share`` of its training images
moved to a wrong class (``fcnx bench plant-mislabels --split train``). Both sides fine-tune the same
fcnx-tiny nets with the same settings (those of ``scripts/train_tiny.sh``, fewer epochs), by default from
the plugin's shipped weights (trained on other images of the same classes: seed 0, where this uses seed 1),
as the paper fine-tunes ImageNet nets, through the library calls the commands make, one after the other in
this process. Then every training image is
judged by the models ``fcnx suspects`` chooses for it (:func:`fcnx.jobs.suspects.choose_models`) with the
graded signal (:func:`~fcnx.jobs.suspects.label_gap`), ranked as ``fcnx suspects --signal graded`` ranks
(:func:`~fcnx.jobs.suspects.rank_by_gap`; the boxes of the other class, which the command adds, are
left out). Printed per side: precision and recall of the flagged images (gap > 0), precision at k
(k = the number planted) and average precision of the ranking (planted images not flagged count as
found at no rank), the training cost (epochs x images summed over every model, and wall time) and the
judging time, as ratios to the in-sample ensemble's.

    OMP_NUM_THREADS=1 python benchmarks/oos_suspects.py [--classes 10] [--per-class 30] [--share 0.1]
        [--folds 2] [--epochs 6] [--weights pretrained] [--lr 3e-3] [--nets tiny_vgg,tiny_resnet] [--seed 1]
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from fcnx.bench import fashion
from fcnx.io.datasets import open_dataset
from fcnx.jobs.suspects import SuspectsOptions, choose_models, label_gap, rank_by_gap
from fcnx.method.metrics import average_precision, detection_scores, precision_at_k
from fcnx.training import ensemble, folds, trainer
from fcnx.training.manifest import ensemble_weights


def image_epochs(run: Path, config: trainer.TrainConfig) -> int:
    """Epochs run x training images of the run in ``run`` (one net)."""
    with (run / trainer.METRICS).open() as f:
        epochs = sum(1 for _ in csv.DictReader(f))
    return epochs * len(trainer.split(config).train)


def judge(data: Path, options: SuspectsOptions, planted: set[str]) -> dict[str, Any]:
    """The graded signal of every training image, judged by the models ``options`` choose for it (as ``fcnx
    suspects`` does), ranked as ``--signal graded --top N`` ranks it, scored against ``planted``."""
    items = open_dataset(data, "train").items
    start = time.perf_counter()
    cropper = choose_models(options, items)
    gaps = {
        item.rel.relative_to("images").as_posix(): label_gap(*cropper.label_levels(item, str(item.label))[2:4])
        for item in items
    }
    seconds = time.perf_counter() - start
    ranked = rank_by_gap(gaps)
    found = detection_scores(ranked, planted)
    return {
        "flagged": found.suspects,
        "precision": found.precision,
        "recall": found.recall,
        "p_at_k": precision_at_k(ranked, planted, len(planted)),
        "ap": average_precision(ranked, planted),
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=10, help="Fashion-MNIST classes")
    parser.add_argument("--per-class", type=int, default=30, help="training images per class")
    parser.add_argument("--share", type=float, default=0.1, help="share of training images given a wrong label")
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--nets", default="tiny_vgg,tiny_resnet")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument(
        "--weights",
        default="pretrained",
        help="starting weights: pretrained (fcnx-tiny's shipped nets, trained on the images of seed 0: "
        "transfer learning, as the paper fine-tunes ImageNet nets) or none (from scratch)",
    )
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=1, help="of the images, the planted labels and the folds")
    parser.add_argument("--work", type=Path, default=None, help="folder to keep (default: a temporary one)")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    nets = args.nets.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        cfg = fashion.BenchConfig(
            seed=args.seed, num_classes=args.classes, train_per_class=args.per_class, test_per_class=0
        )
        fashion.generate(work / "clean", cfg)
        planted = set(fashion.plant_mislabels(work / "clean", work / "noisy", args.share, args.seed, split="train"))
        data = work / "noisy"
        config = trainer.TrainConfig(
            net=nets[0], data=str(data), size=56, weights=args.weights, schedule="all",
            epochs=args.epochs, patience=args.epochs, batch_size=32, lr=args.lr, augment=False, seed=args.seed,
        )  # fmt: skip
        quiet: dict[str, Any] = {"device": "cpu", "workers": 0, "quiet": True, "log": lambda _: None}

        start = time.perf_counter()
        inside = work / "ensemble"
        inside.mkdir()
        ensemble.train_ensemble(ensemble.plan(config, nets, inside), inside, **quiet)
        seconds = {"in-sample": time.perf_counter() - start}
        cost = {"in-sample": sum(image_epochs(inside / n, replace(config, net=n)) for n in nets)}

        start = time.perf_counter()
        outside = work / "folds"
        outside.mkdir()
        k = args.folds
        folds.train_folds(folds.plan(replace(config, folds=k), nets, outside), outside, **quiet)
        seconds["out-of-sample"] = time.perf_counter() - start
        cost["out-of-sample"] = sum(
            image_epochs(outside / f"fold{f}" / n, replace(config, net=n, folds=k, fold=f))
            for f in range(1, k + 1)
            for n in nets
        )

        names, files, kernel = ensemble_weights(inside)
        sides = {
            "in-sample": SuspectsOptions(names, files, kernel, "train", "graded", device="cpu"),
            "out-of-sample": SuspectsOptions(names, {}, kernel, "train", "graded", device="cpu", folds=str(outside)),
        }
        rows = {side: judge(data, options, planted) for side, options in sides.items()}
        n_images = len(open_dataset(data, "train").items)

    print(
        f"{n_images} training images of {args.classes} classes, {len(planted)} mislabelled ({args.share:.0%}), "
        f"nets {args.nets} from {args.weights} weights, {args.epochs} epochs at lr {args.lr:g}, {args.folds} folds, "
        f"seed {args.seed}; "
        f"load {os.getloadavg()[0]:.1f}"
    )
    print(
        f"| side | flagged | precision | recall | P@{len(planted)} | AP | training image-epochs | training wall time "
        "| judging wall time |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for side, s in rows.items():
        print(
            f"| {side} | {s['flagged']} | {s['precision']:.2f} | {s['recall']:.2f} | {s['p_at_k']:.2f} | "
            f"{s['ap']:.2f} | {cost[side]} ({cost[side] / cost['in-sample']:.2f}x) | "
            f"{seconds[side] / seconds['in-sample']:.2f}x | {s['seconds'] / rows['in-sample']['seconds']:.2f}x |"
        )
    print(f"in-sample wall times: training {seconds['in-sample']:.0f} s, judging {rows['in-sample']['seconds']:.0f} s")


if __name__ == "__main__":
    main()
