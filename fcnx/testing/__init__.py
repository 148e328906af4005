"""Helpers for tests and benchmarks: sane random weights, saved as real fcnx checkpoints.

Random initialisations of deep nets with batch-norm explode (Inception-v3's logits reach 1e7);
re-estimating the batch-norm statistics on random inputs gives outputs of order one, so
numerical comparisons are meaningful.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fcnx.backbones import checkpoint
from fcnx.backbones.registry import get_backbone
from fcnx.backbones.spec import Preprocess


def calibrate_batchnorm(
    model: Any, size: int, preprocess: Preprocess | None = None, batches: int = 2, batch_size: int = 4, seed: int = 0
) -> Any:
    """Re-estimate every batch-norm layer's running statistics on uniformly random pixels (none: nothing is run).

    The pixels go through ``preprocess`` first, so the statistics fit inputs like the ones tests feed.
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    preprocess = preprocess or Preprocess()
    mean = torch.tensor(preprocess.mean).view(1, 3, 1, 1)
    std = torch.tensor(preprocess.std).view(1, 3, 1, 1)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:  # nothing to re-estimate (VGG): skip the forward passes, the slowest part of a random checkpoint
        return model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            model((torch.rand(batch_size, 3, size, size, generator=generator) - mean) / std)
    for m in norms:
        m.momentum = 0.1
    return model.eval()


def random_checkpoint(
    path: str | Path,
    backbone: str,
    classes: list[str],
    input_size: int | None = None,
    head: tuple[int, ...] = (),
    seed: int = 0,
) -> Path:
    """Save a seeded, batch-norm-calibrated random initialisation of a PyTorch ``backbone`` as a checkpoint."""
    import torch

    spec = get_backbone(backbone)
    size = input_size or spec.default_size
    torch.manual_seed(seed)
    model = calibrate_batchnorm(spec.build(len(classes), tuple(head), None), size, spec.preprocess, seed=seed)
    meta = checkpoint.CheckpointMeta(arch=spec.name, classes=list(classes), input_size=size, head=list(head))
    return checkpoint.save(path, model.state_dict(), meta)


def formula_boundaries(spec: Any, d0: int, steps: tuple[int, ...] = (1, 2, 5)) -> tuple[list[int], list[int]]:
    """Input sides around the boundaries of ``D = d0 + step`` and the heatmap sides the formula promises there.

    For each ``D``: ``W_min(D) - 1`` (one cell less), ``W_min(D)`` and ``W_min(D) + stride - 1`` (the
    same cells) and ``W_min(D) + stride`` (one more), for an FCN pooled at ``d0``.
    """
    sizes, expected = [], []
    for d in (d0 + step for step in steps):
        lo = spec.w_min(d)
        hi = lo + spec.stride - 1
        for side, cells in ((lo - 1, d - d0), (lo, d - d0 + 1), (hi, d - d0 + 1), (hi + 1, d - d0 + 2)):
            sizes.append(side)
            expected.append(cells)
    return sizes, expected
