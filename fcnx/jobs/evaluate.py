"""The evaluate job: each net's top-1/top-5 on a dataset's images and on their crops (the paper's Table IV).

One job for the CLI and the library alike::

    from fcnx import EvaluateOptions, run_evaluate

    options = EvaluateOptions(nets=["efficientnet_lite0"], kernel=224, crops="out/boxes.jsonl")
    job = run_evaluate("food-101/", options, outdir="eval/")
    result = job.run()                  # an Evaluation: result.rows(), result.skipped
                                        # and eval/evaluation.csv, eval/evaluation.json

:func:`run_evaluate` does the preparation (open the dataset, read the boxes, check OUTDIR, load
the nets, check the classes) and returns the prepared :class:`EvaluateJob`; its ``warnings`` are
the non-fatal findings of that stage. The scoring itself is :func:`fcnx.jobs.scoring.evaluate`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fcnx.engine.backends import DEFAULT_BACKEND, DEFAULT_PRECISION
from fcnx.errors import FcnxError, UsageError
from fcnx.io.datasets import LabelledImages, open_dataset
from fcnx.io.discovery import ImageItem
from fcnx.jobs import scoring
from fcnx.jobs.resume import ResumeJournal
from fcnx.method import geometry

if TYPE_CHECKING:
    from fcnx.engine.ensemble import KernelChoice


#: the files a run writes into its output folder (never one it did not write: :class:`~fcnx.jobs.outdir.settings.SettingsFile`)
OUTPUTS = ("evaluation.csv", "evaluation.json")
#: the journal of the images scored (:class:`~fcnx.jobs.resume.ResumeJournal`): a killed run resumes from it
JOURNAL = "evaluation.jsonl"


@dataclass(frozen=True)
class EvaluateOptions:
    """What to score with and on what (see ``fcnx evaluate --help`` for each option's meaning).

    ``crops``: a ``boxes.jsonl`` whose boxes are scored; ``crop``: crop every image for its label
    with the same ensemble first; neither: the originals only. ``engine``: ``local`` or ``ray``.
    """

    nets: Sequence[str]
    weights: dict[str, str] = field(default_factory=dict)
    kernel: KernelChoice = geometry.DEFAULT_KERNEL
    split: str = "test"
    crops: str | os.PathLike[str] | None = None
    crop: bool = False
    skip_missing: bool = False
    batch_size: int | None = None
    device: str = "auto"
    engine: str = "local"
    address: str | None = None
    actors: int | None = None
    jobs: int | None = 1
    backend: str = DEFAULT_BACKEND
    precision: str = DEFAULT_PRECISION


@dataclass(frozen=True)
class ScoreTask:
    """``fcnx evaluate`` in a worker process (:func:`fcnx.jobs.workers.run_in_workers`): each image's
    :data:`~fcnx.jobs.scoring.Outcome` (:func:`~fcnx.jobs.scoring.score_items`)."""

    nets: tuple[str, ...]
    weights: dict[str, str]
    kernel: KernelChoice
    boxes: scoring.BoxIndex | None
    crop: bool
    batch_size: int
    backend: str
    precision: str

    def start(self, device: str) -> Callable[[list[ImageItem]], Iterator[tuple[ImageItem, Any, float]]]:
        from fcnx.engine.cropper import Cropper
        from fcnx.engine.ensemble import load_ensemble

        ensemble = load_ensemble(
            self.nets, self.weights, kernel=self.kernel, device=device, backend=self.backend, precision=self.precision
        )
        box_of: Callable[[ImageItem, Any], scoring.XYWH | None] | None = None
        if self.boxes is not None:
            box_of = self.boxes.box_of
        elif self.crop:
            box_of = scoring.crops_of(Cropper(ensemble))

        def run(items: list[ImageItem]) -> Iterator[tuple[ImageItem, Any, float]]:
            before = ensemble.forward_seconds
            for item, outcome in scoring.score_items(ensemble, items, box_of, self.batch_size):
                yield item, outcome, ensemble.forward_seconds - before
                before = ensemble.forward_seconds

        return run


class EvaluateJob:
    """One evaluation of a dataset, its tables written to ``outdir`` if given; :meth:`prepare` it, then :meth:`run` it."""

    def __init__(
        self, data: str | os.PathLike[str], options: EvaluateOptions, outdir: str | os.PathLike[str] | None = None
    ) -> None:
        if options.crops is not None and options.crop:
            raise UsageError("give --crops FILE or --crop, not both")
        if options.skip_missing and options.crops is None:
            raise UsageError("--skip-missing goes with --crops FILE")
        self.data = Path(data)
        self.options = options
        self.outdir = None if outdir is None else Path(outdir)
        #: non-fatal findings of the preparation (duplicate list lines, a boxes file cut short)
        self.warnings: list[str] = []
        #: the images left out for having no box (``skip_missing``)
        self.without_box: list[ImageItem] = []
        self.journal: ResumeJournal | None = None

    def prepare(self) -> EvaluateJob:
        """Open the dataset and the boxes, check OUTDIR, load the nets and check that they know the dataset's classes."""
        from fcnx.io.files import check_outdir

        options = self.options
        self.dataset: LabelledImages = open_dataset(self.data, options.split)
        self.warnings += self.dataset.warnings
        self.items = self.dataset.items
        if not self.items:
            raise UsageError(f"no images in the {options.split} split", self.data)
        self.boxes: scoring.BoxIndex | None = None
        self._box_of: Callable | None = None
        if options.crops is not None:
            self._read_boxes(Path(options.crops))
        if self.outdir is not None:
            self.outdir = check_outdir(self.outdir, [self.data])
            self.journal = ResumeJournal(
                self.outdir, "fcnx evaluate", JOURNAL, self.settings(), OUTPUTS, self._valid
            ).open()
            self.warnings += self.journal.warnings
        done = {} if self.journal is None else self.journal.done
        #: the images not scored yet (all, without an OUTDIR or with the Ray engine)
        self.pending = [i for i in self.items if str(i.path) not in done or options.engine != "local"]
        try:
            self._load_nets()
        except BaseException:
            self.close()
            raise
        return self

    def settings(self) -> dict[str, Any]:
        """The options that change the scores: an OUTDIR made with other settings is refused."""
        from fcnx.jobs.crop import file_digest, weights_identity

        o = self.options
        return {
            "version": 1,
            "nets": list(o.nets),
            "weights": weights_identity(o.nets, o.weights),
            "kernel": dict(o.kernel) if isinstance(o.kernel, Mapping) else o.kernel,
            "split": o.split,
            "boxes": None if o.crops is None else f"sha256:{file_digest(Path(o.crops))}",
            "crop": o.crop,
            "skip_missing": o.skip_missing,
        }

    def _names(self) -> list[str]:
        return scoring.classifier_names(self.options.nets)

    def _valid(self, record: dict[str, Any]) -> bool:
        """Whether ``record`` holds one image's whole outcome under these options."""
        cropped = self.options.crops is not None or self.options.crop
        return scoring.is_outcome(record.get("outcome"), self._names(), cropped)

    def close(self) -> None:
        """Release the output folder (done by :meth:`run`; call it if the job is not run)."""
        if self.journal is not None:
            self.journal.close()

    def _load_nets(self) -> None:
        from fcnx.engine.devices import resolve_device
        from fcnx.engine.ensemble import load_ensemble
        from fcnx.jobs import workers

        options = self.options
        local = options.engine == "local"
        if not local:
            from fcnx.engine.options import check_kernel

            check_kernel(options.kernel)
        device = resolve_device(options.device if local else "cpu")
        #: the processes that score the images (``--jobs``)
        self.plan = workers.Plan(1, (str(device),), 0)
        if local and options.jobs != 1:
            self.plan = workers.plan(options.jobs, str(device), len(self.pending))
        # the Ray driver and the parent of worker processes load the nets only for their names and classes
        driver = not local or self.plan.jobs > 1
        self.ensemble = load_ensemble(
            options.nets,
            options.weights,
            kernel=options.kernel,
            device=device,
            backend="torch" if driver else options.backend,
            precision="fp32" if driver else options.precision,
        )
        if self.plan.jobs > 1:
            workers.workers_runtime(self.ensemble, device.type, options.backend, options.precision)
        _check_classes(self.dataset.classes, self.ensemble.classes, self.data)
        if options.crop:
            from fcnx.engine.cropper import Cropper

            self._box_of = scoring.crops_of(Cropper(self.ensemble))

    def _read_boxes(self, path: Path) -> None:
        boxes = scoring.read_boxes(path)
        self.warnings += boxes.warnings
        missing = [item for item in self.items if boxes.find(item) is None]
        if len(missing) == len(self.items):
            raise UsageError(
                f"none of the {len(self.items)} images of the {self.options.split} split has a box in it: "
                f"crop the same split first",
                path,
            )
        if self.options.skip_missing:
            self.items = [item for item in self.items if boxes.find(item) is not None]
            self.without_box = missing
        # else each is reported as it is met, skipped on both sides, and counted in ``skipped``
        self.boxes = boxes
        self._box_of = boxes.box_of

    def run(
        self, progress: Callable[[], None] | None = None, report: Callable[[str], None] | None = None
    ) -> scoring.Evaluation:
        """Score the originals (and crops) and write the tables; ``progress()`` after each image, ``report(line)``
        for each one skipped.

        The dataset's missing files count as skipped (reported first). Raises :class:`FcnxError`
        when no image could be scored. With an OUTDIR, each image's outcome is journaled as it is
        known, and a rerun scores only the images not journaled yet (:attr:`pending`).
        """
        try:
            return self._run(progress, report)
        finally:
            self.close()

    def _run(
        self, progress: Callable[[], None] | None = None, report: Callable[[str], None] | None = None
    ) -> scoring.Evaluation:
        options = self.options
        for line in self.dataset.missing_lines:
            if report:
                report(line)
        if options.engine == "local":
            from fcnx.engine.devices import default_batch_size

            batch_size = options.batch_size or default_batch_size(self.ensemble.device)
            outcomes = dict(
                (str(i.path), r["outcome"])
                for i in self.items
                if self.journal and (r := self.journal.done.get(str(i.path)))
            )
            for item, outcome in self._scores(batch_size):
                if self.journal is not None:
                    self.journal.add({"path": str(item.path), "outcome": outcome})
                outcomes[str(item.path)] = outcome
                if isinstance(outcome, str) and report:
                    report(outcome)
                if progress:
                    progress()
            if self.journal is not None:  # worker processes journal in the order the images complete
                self.journal.compact(str(i.path) for i in self.items)
            scored = (outcomes[str(i.path)] for i in self.items)
            result = scoring.tally(self._names(), scored, self._box_of is not None)
        else:
            result = _evaluate_on_ray(options, self.items, self.boxes, progress, report)
        result.skipped += self.dataset.missing_lines
        if all(scores.total == 0 for scores in result.original.values()):
            raise FcnxError(
                f"no image could be scored ({len(result.skipped)} skipped, e.g. {result.skipped[0]})", self.data
            )
        if self.outdir is not None:
            _write_tables(self.outdir, result, self.options, self.without_box)
        return result

    def _scores(self, batch_size: int) -> Iterator[tuple[ImageItem, scoring.Outcome]]:
        """Each pending image with its outcome: in this process, in order, or in worker processes as they complete."""
        if self.plan.jobs == 1:
            yield from scoring.score_items(self.ensemble, self.pending, self._box_of, batch_size)
            return
        from fcnx.jobs.workers import run_in_workers

        o = self.options
        task = ScoreTask(tuple(o.nets), o.weights, o.kernel, self.boxes, o.crop, batch_size, o.backend, o.precision)
        for index, outcome in run_in_workers(task, self.pending, self.plan, batch_size):
            yield self.pending[index], outcome


def _evaluate_on_ray(
    options: EvaluateOptions,
    items: list[ImageItem],
    boxes: scoring.BoxIndex | None,
    progress: Callable[[], None] | None,
    report: Callable[[str], None] | None,
) -> scoring.Evaluation:
    """Score ``items`` (and their crops) on a Ray cluster."""
    from fcnx.engine.options import CropOptions
    from fcnx.jobs.ray import evaluate_on_ray

    o = options
    nets = CropOptions(o.nets, o.weights, o.kernel, backend=o.backend, precision=o.precision)
    return evaluate_on_ray(
        nets.portable(),
        items,
        boxes=boxes,
        crop=options.crop,
        batch_size=options.batch_size,
        address=options.address,
        device=options.device,
        actors=options.actors,
        progress=progress,
        report=report,
    )


def _check_classes(classes: Sequence[str], known: Sequence[str], data: Path) -> None:
    """Refuse a dataset whose ``classes`` are not all ``known`` to the nets."""
    unknown = [c for c in classes if c not in known]
    if unknown:
        raise UsageError(
            f"{len(unknown)} of the dataset's {len(classes)} classes are not classes of the nets "
            f"(e.g. {', '.join(map(repr, unknown[:3]))}): weights trained on another class list?",
            data,
        )


def _write_tables(
    out: Path, result: scoring.Evaluation, options: EvaluateOptions, without_box: list[ImageItem]
) -> None:
    """Write evaluation.csv and evaluation.json: the table's rows, the images skipped and left out."""
    from fcnx.io.files import atomic_text, writing
    from fcnx.io.tables import write_csv

    rows = result.rows()
    summary = {
        "split": options.split,
        "kernel": dict(kernel) if isinstance(kernel := options.kernel, Mapping) else kernel,
        "rows": rows,
        "skipped": result.skipped,
        "without_box": [str(i.path) for i in without_box],
    }
    with writing(out):
        write_csv(out / OUTPUTS[0], list(rows[0]), rows)
        atomic_text(out / OUTPUTS[1], json.dumps(summary, indent=2))


def run_evaluate(
    data: str | os.PathLike[str], options: EvaluateOptions, outdir: str | os.PathLike[str] | None = None
) -> EvaluateJob:
    """Prepare the evaluation of the dataset at ``data`` (:meth:`EvaluateJob.prepare`); :meth:`~EvaluateJob.run` it."""
    return EvaluateJob(data, options, outdir).prepare()
