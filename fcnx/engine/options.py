"""The crop job's options: one frozen value, checked once where it is built.

The CLI builds it from ``fcnx crop``'s options (a library caller builds it itself); the crop job, the
:class:`~fcnx.engine.cropper.Cropper`, the worker processes and Ray actors (the object itself, pickled),
the OUTDIR's settings (:meth:`CropOptions.settings`) and its outputs all read this one object. Each
value is checked here, with a one-line :class:`~fcnx.errors.UsageError` naming the option; what needs
the nets (categories, kernels, a device for ``half``) is checked where the nets are loaded.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fcnx.engine import backends
from fcnx.errors import UsageError
from fcnx.method import boxes, fitting, geometry
from fcnx.method.selection import DEFAULT_RULE, RULES

if TYPE_CHECKING:
    from fcnx.engine.cropper import Cropper
    from fcnx.engine.ensemble import KernelChoice

#: the version of the settings form (:meth:`CropOptions.settings`)
SETTINGS_VERSION = 1
#: decode processes at most, by default (half the CPUs up to this many)
MOST_DECODE_WORKERS = 4


def check_pyramid(step: float, max_scale: float | str) -> None:
    """Refuse a ``--step`` and ``--max-scale`` that give no valid pyramid or too many levels, naming both options."""
    try:
        geometry.pyramid_levels(step, geometry.largest_scale(max_scale))
    except ValueError as exc:
        raise UsageError(f"--step {step} with --max-scale {max_scale}: {exc}") from None


def check_kernel(kernel: Any) -> None:
    """Refuse a kernel other than one common side (``native``, per net) on Ray: the actors decode for one kernel."""
    if not isinstance(kernel, int):
        raise UsageError(f"--engine ray runs the nets at one common kernel, not {kernel!r}: give --kernel N")


@dataclass(frozen=True)
class CropOptions:
    """What to crop with and how (see ``fcnx crop --help`` for each option's meaning).

    ``weights``: per net a checkpoint file or hub tag (default ``pretrained``); ``categories``:
    names or indices (default: each image's label, else the top class); ``backend``/``precision``:
    what runs the nets (:mod:`fcnx.engine.backends`); ``heatmaps`` or ``heatmaps_npy``: the boxes keep
    their heatmaps (:attr:`keep_heatmaps`); ``workers``: decode processes (default: half the CPUs, at
    most 4; :attr:`decode_workers`); ``jobs``: processes running the nets on this machine (``None``:
    auto, :func:`fcnx.jobs.workers.plan`; 1: this process); ``engine``: ``local`` or ``ray``.
    """

    nets: Sequence[str] = ()
    weights: Mapping[str, str | Path] = field(default_factory=dict)
    kernel: KernelChoice = geometry.DEFAULT_KERNEL
    categories: Sequence[str | int] = ()
    step: float = geometry.DEFAULT_STEP
    max_scale: float | str = geometry.DEFAULT_MAX_SCALE
    selection: str = DEFAULT_RULE
    early_stop: bool = False
    split: str = "all"
    device: str = "auto"
    half: bool = False
    compile: bool = False
    backend: str = backends.DEFAULT_BACKEND
    precision: str = backends.DEFAULT_PRECISION
    batch_size: int | None = None
    workers: int | None = None
    jobs: int | None = 1
    dry_run: bool = False
    heatmaps: bool = False
    heatmaps_npy: bool = False
    box: str = boxes.DEFAULT
    instances: int = 1
    gallery: bool = False
    fail_fast: bool = False
    in_place: bool = False
    profile: bool = False
    engine: str = "local"
    address: str | None = None
    actors: int | None = None

    def __post_init__(self) -> None:
        check_pyramid(self.step, self.max_scale)
        if self.engine == "local" and (self.address is not None or self.actors is not None):
            raise UsageError("--address and --actors apply to --engine ray")
        if self.engine == "ray":
            check_kernel(self.kernel)
        if self.selection not in RULES:
            raise UsageError(f"unknown selection rule {self.selection!r}; use one of {', '.join(RULES)}")
        try:
            rule = boxes.rule(self.box)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if rule.pixels:
            fitting.opencv()  # the rules fitting pixels need OpenCV: one line now, not an error per image
        if self.instances < 1:
            raise UsageError(f"the number of instances must be >= 1, got {self.instances}")
        if (self.batch_size is not None and self.batch_size < 1) or (self.workers is not None and self.workers < 0):
            raise UsageError("the batch size must be >= 1 and the number of workers >= 0")

    @property
    def keep_heatmaps(self) -> bool:
        """Whether the boxes keep their heatmaps and evidence (for ``heatmaps`` and ``heatmaps_npy``)."""
        return self.heatmaps or self.heatmaps_npy

    @property
    def decode_workers(self) -> int:
        """The decode processes: ``workers``, by default half the CPUs, at most :data:`MOST_DECODE_WORKERS`."""
        return self.workers if self.workers is not None else min(MOST_DECODE_WORKERS, (os.cpu_count() or 2) // 2)

    def portable(self) -> CropOptions:
        """The same options with weight files as absolute paths: for a worker process or Ray actor elsewhere."""
        absolute = {n: os.path.abspath(w) if Path(w).is_file() else w for n, w in self.weights.items()}
        return dataclasses.replace(self, weights=absolute)

    def settings(self, cropper: Cropper, weights: Mapping[str, str], runs_on: str) -> dict[str, Any]:
        """The settings form: the options that change the boxes (an OUTDIR made with others is refused), with what
        ``cropper`` resolved them to, ``weights`` identifying each net's weights, and what runs the nets."""
        ensemble = cropper.ensemble
        categories = cropper.categories
        settings: dict[str, Any] = {
            "version": SETTINGS_VERSION,
            "nets": list(self.nets),
            "weights": dict(weights),
            "kernel": ensemble.kernel,
            "step": self.step,
            "max_scale": self.max_scale,
            "selection": self.selection,
            "early_stop": self.early_stop,
            "categories": [cropper.classes[c] for c in categories] if categories else None,
            "half": self.half,
        }
        if ensemble.mixed:  # absent for nets of one kernel and stride, so earlier OUTDIRs still resume
            settings["kernels"] = [f.kernel for f in ensemble.fcns]
        if self.box != "square":  # absent for the paper's box, so OUTDIRs made before --box still resume
            settings["box"] = self.box
        if self.instances != 1:  # absent for one box per category, so earlier OUTDIRs still resume
            settings["instances"] = self.instances
        if self.in_place:  # it changes the crops' names (absent otherwise, so OUTDIRs of earlier versions still resume)
            settings["in_place"] = True
        backend, _, precision = runs_on.partition(" ")
        if precision:  # it may move boxes (absent for fp32, so earlier OUTDIRs still resume)
            settings["precision"] = precision
        settings["backend"] = backend  # what ran the nets; recorded, never compared: the same boxes
        return settings
