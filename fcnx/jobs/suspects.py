"""The suspects job: images the ensemble suggests are mislabelled, ranked, as tables and a page to review.

One job for the CLI and the library alike::

    from fcnx import SuspectsOptions, run_suspects

    job = run_suspects("food-101/", SuspectsOptions(nets=["efficientnet_lite0"], kernel=224), "review/")
    suspects = job.run()        # Suspect list, most convincing first; review/suspects.{csv,json,html}

:func:`find_suspects` is the search on its own, for any :class:`~fcnx.engine.cropper.Cropper` and items.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fcnx.engine.backends import DEFAULT_BACKEND, DEFAULT_PRECISION
from fcnx.errors import FcnxError, UsageError
from fcnx.io.datasets import LabelledImages, open_dataset
from fcnx.io.discovery import ImageItem
from fcnx.jobs import workers
from fcnx.jobs.resume import ResumeJournal
from fcnx.method.geometry import DEFAULT_KERNEL, XYWH

if TYPE_CHECKING:
    from fcnx.engine.cropper import Cropper
    from fcnx.engine.ensemble import KernelChoice
    from fcnx.jobs.heldout import HeldOutCropper

#: what each mislabel signal means, for the page
SIGNAL_TEXT = {
    "paper": "No net finds the label at any scale",
    "graded": "The label is less likely than another class, anywhere in the image (largest gap first)",
}
#: columns of ``suspects.csv``
FIELDS = ["path", "label", "other_category", "other_votes", "other_mean_confidence", "gap", "x", "y", "w", "h"]

#: columns of ``label_issues.csv``: cleanlab's (``Datalab.get_issues("label")``), after the image's path
ISSUE_FIELDS = ["path", "is_label_issue", "label_score", "given_label", "predicted_label"]

#: the files a run writes into its output folder (never one it did not write: :class:`~fcnx.jobs.outdir.settings.SettingsFile`)
OUTPUTS = ("suspects.csv", "suspects.json", "suspects.html", "label_issues.csv")
#: the journal of the images scored (:class:`~fcnx.jobs.resume.ResumeJournal`): a killed run resumes from it
JOURNAL = "suspects.jsonl"

#: float32 rounding of summed probabilities: the same maximum summed in two orders differs by about 6e-8
GAP_ROUNDING = 1e-6

#: mislabel signals of :func:`find_suspects`
SIGNALS = tuple(SIGNAL_TEXT)


@dataclass(frozen=True)
class Suspect:
    """A likely mislabelled image, with what the ensemble sees instead (its top class, where and how strongly).

    ``gap`` (graded signal only): how far the label's best summed probability anywhere in the
    pyramid falls below the best of any class.
    """

    path: Path
    label: str
    other: str
    other_votes: int
    other_confidence: float
    box: XYWH
    gap: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "label": self.label,
            "other_category": self.other,
            "other_votes": self.other_votes,
            "other_mean_confidence": self.other_confidence,
            "gap": self.gap,
            "x": self.box[0],
            "y": self.box[1],
            "w": self.box[2],
            "h": self.box[3],
        }


@dataclass(frozen=True)
class LabelScore:
    """The ensemble's evidence on one image's label, from every level of its pyramid (all nets summed).

    ``label_best``: the label's best summed probability at any cell of any scale; ``best``: the best
    of any class there, reached by ``predicted``; ``voted``: some net's top class is the label at some
    cell (the paper's signal is its absence); ``gap``: :func:`label_gap`.
    """

    path: Path
    label: str
    predicted: str
    label_best: float
    best: float
    voted: bool
    gap: float

    @property
    def score(self) -> float:
        """cleanlab's ``label_score`` in [0, 1], lower = more likely mislabelled: ``label_best / best``
        (1 when the label is the most confident class: a gap of 0)."""
        return 1.0 if self.gap == 0 else min(1.0, max(0.0, self.label_best / self.best))

    def as_record(self) -> dict[str, Any]:
        """The image's line of ``suspects.jsonl`` (what a rerun reads back instead of scoring it again)."""
        return {
            "path": str(self.path),
            "score": {k: getattr(self, k) for k in ("label", "predicted", "label_best", "best", "voted", "gap")},
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> LabelScore:
        return cls(Path(record["path"]), **record["score"])

    def issue_row(self, flagged: bool) -> dict[str, Any]:
        """The image's row of ``label_issues.csv``."""
        return {
            "path": str(self.path),
            "is_label_issue": flagged,
            "label_score": self.score,
            "given_label": self.label,
            "predicted_label": self.predicted,
        }


def rank_suspects(suspects: Iterable[Suspect]) -> list[Suspect]:
    """Most convincing first: the largest gap (graded), else more nets voting for the other category,
    then higher confidence, then path."""
    return sorted(suspects, key=lambda s: (-(s.gap or 0.0), -s.other_votes, -s.other_confidence, str(s.path)))


def label_gap(levels: Sequence[Any], maps: Sequence[tuple[np.ndarray, np.ndarray]]) -> float:
    """The graded mislabel signal of one image from :meth:`~fcnx.engine.cropper.Cropper.label_levels`: the best
    summed probability of any class anywhere in its pyramid minus the best of its label (0 when the
    label is the most confident class there: a gap within :data:`GAP_ROUNDING` is the same maximum summed
    in another order, not a gap)."""
    gap = max(float(values.max()) for values, _ in maps) - max(float(level.summed().max()) for level in levels)
    return gap if gap > GAP_ROUNDING else 0.0


def rank_by_gap(gaps: dict[str, float], top: int | None = None) -> list[str]:
    """The keys of ``gaps`` (:func:`label_gap` by image) above 0, largest gap first (ties: by key), at most ``top``."""
    return sorted((key for key, gap in gaps.items() if gap > 0), key=lambda key: (-gaps[key], key))[:top]


def score_item(cropper: Cropper | HeldOutCropper, item: ImageItem) -> LabelScore:
    """The :class:`LabelScore` of one labelled image (:class:`~fcnx.errors.FcnxError` if it cannot be scored)."""
    from fcnx.method.selection import top_category

    if item.label is None:
        raise FcnxError("it has no label", item.path)
    levels, maps = cropper.label_levels(item, item.label)[2:4]
    return LabelScore(
        item.path,
        item.label,
        cropper.classes[top_category(maps)],
        max(float(level.summed().max()) for level in levels),
        max(float(values.max()) for values, _ in maps),
        any(bool(level.vote.any()) for level in levels),
        label_gap(levels, maps),
    )


def judge(cropper: Cropper | HeldOutCropper, item: ImageItem) -> dict[str, Any]:
    """The image's line of ``suspects.jsonl``: its :class:`LabelScore`, or the one-line error that stopped it."""
    try:
        return score_item(cropper, item).as_record()
    except FcnxError as exc:
        return {"path": str(item.path), "error": str(exc)}


def score_labels(
    cropper: Cropper | HeldOutCropper, items: Iterable[ImageItem], progress: Callable[[], None] | None = None
) -> tuple[list[LabelScore], list[str]]:
    """The :class:`LabelScore` of every labelled image (in order), and the one-line errors of the others."""
    scores, failures = [], []
    for item in items:
        try:
            scores.append(score_item(cropper, item))
        except FcnxError as exc:
            failures.append(str(exc))
        if progress:
            progress()
    return scores, failures


def _is_result(record: Mapping[str, Any]) -> bool:
    """Whether a line read back from ``suspects.jsonl`` is a whole result: an image's score or its error."""
    if set(record) == {"path", "error"}:
        return isinstance(record["error"], str)
    score = record.get("score")
    types = {"label": str, "predicted": str, "label_best": float, "best": float, "voted": bool, "gap": float}
    return (
        set(record) == {"path", "score"}
        and isinstance(score, dict)
        and set(score) == set(types)
        and all(type(score[k]) is t for k, t in types.items())
    )


def flagged(scores: Sequence[LabelScore], signal: str = "paper", top: int | None = None) -> list[LabelScore]:
    """The scores the mislabel ``signal`` flags: ``paper``, those of labels no net votes for at any cell of
    any scale (in order); ``graded``, those whose label is not the most confident class, by gap (at most ``top``)."""
    if signal not in SIGNALS:
        raise UsageError(f"unknown mislabel signal {signal!r}; use one of {', '.join(SIGNALS)}")
    if signal == "paper":
        return [s for s in scores if not s.voted]
    by_path = {str(s.path): s for s in scores}
    return [by_path[key] for key in rank_by_gap({key: s.gap for key, s in by_path.items()}, top)]


def find_suspects(
    cropper: Cropper | HeldOutCropper,
    items: Iterable[ImageItem],
    progress: Callable[[], None] | None = None,
    signal: str = "paper",
    top: int | None = None,
) -> tuple[list[Suspect], list[str]]:
    """Likely mislabelled images, most convincing first (at most ``top``), and the one-line errors of unreadable ones.

    ``signal="paper"``: the images for whose label no net votes at any cell of any scale.
    ``signal="graded"``: the images whose label is not the most confident class, ranked by
    :func:`label_gap` (on cluttered images the paper's signal rarely fires: docs/benchmark.md).
    """
    if signal not in SIGNALS:
        raise UsageError(f"unknown mislabel signal {signal!r}; use one of {', '.join(SIGNALS)}")
    scores, failures = score_labels(cropper, items, progress)
    return suspects_of(cropper, flagged(scores, signal, top), signal, top), failures


def suspects_of(
    cropper: Cropper | HeldOutCropper, chosen: Iterable[LabelScore], signal: str, top: int | None
) -> list[Suspect]:
    """The :class:`Suspect` of each flagged image, with what the nets see there instead, most convincing first."""
    suspects = []
    for score in chosen:
        gap = score.gap if signal == "graded" else None
        seen = cropper.crop_image(score.path).boxes[0]  # no category, no label: the top class
        suspects.append(
            Suspect(
                score.path,
                score.label,
                seen.category,
                seen.votes,
                seen.mean_confidence,
                (seen.x, seen.y, seen.w, seen.h),
                gap,
            )
        )
    return rank_suspects(suspects)[:top]


@dataclass(frozen=True)
class SuspectsOptions:
    """What to search with (see ``fcnx suspects --help``). ``top``: at most this many (default: all for
    the paper's signal, 5 % of the images for the graded one). ``folds``: the output of ``fcnx train --folds``
    (its ``folds.json`` or folder): each image is scored by the fold model that did not train on it, at the
    folds' kernel, instead of by ``nets``, ``weights`` and ``kernel``."""

    nets: Sequence[str]
    weights: dict[str, str] = field(default_factory=dict)
    kernel: KernelChoice = DEFAULT_KERNEL
    split: str = "all"
    signal: str = "paper"
    top: int | None = None
    device: str = "auto"
    folds: str | None = None
    jobs: int | None = 1
    backend: str = DEFAULT_BACKEND
    precision: str = DEFAULT_PRECISION


def choose_models(options: SuspectsOptions, items: Sequence[ImageItem]) -> Cropper | HeldOutCropper:
    """What scores each image: the ensemble of ``options``, or (``options.folds``) for each image the fold
    model that did not train on it (:mod:`fcnx.jobs.heldout`)."""
    from fcnx.engine.cropper import Cropper
    from fcnx.engine.devices import resolve_device
    from fcnx.engine.ensemble import load_ensemble

    device = resolve_device(options.device)
    o = options
    if options.folds is None:
        return Cropper(
            load_ensemble(o.nets, o.weights, kernel=o.kernel, device=device, backend=o.backend, precision=o.precision)
        )
    from fcnx.io.folds import fold_weights
    from fcnx.jobs.heldout import HeldOutCropper, fold_of_items

    folds, weights = fold_weights(Path(options.folds))
    chosen = fold_of_items(folds, items, Path(options.folds))
    croppers = [
        Cropper(
            load_ensemble(
                folds.nets, files, kernel=folds.kernel, device=device, backend=o.backend, precision=o.precision
            )
        )
        for files in weights
    ]
    return HeldOutCropper(croppers, items, chosen)


@dataclass(frozen=True)
class JudgeTask:
    """``fcnx suspects`` in a worker process (:func:`fcnx.jobs.workers.run_in_workers`): each image's line of
    ``suspects.jsonl`` (:func:`judge`). ``items``: the dataset's, with ``options.folds`` (which fold model
    judges which image), else none."""

    options: SuspectsOptions
    items: tuple[ImageItem, ...] = ()

    def start(self, device: str) -> Callable[[list[ImageItem]], Iterator[tuple[ImageItem, Any, float]]]:
        cropper = choose_models(dataclasses.replace(self.options, device=device), self.items)

        def run(items: list[ImageItem]) -> Iterator[tuple[ImageItem, Any, float]]:
            return ((item, judge(cropper, item), 0.0) for item in items)

        return run


class SuspectsJob:
    """One search of a dataset, written to ``outdir``; :meth:`prepare` it, then :meth:`run` it."""

    def __init__(self, data: str | os.PathLike[str], options: SuspectsOptions, outdir: str | os.PathLike[str]) -> None:
        if options.signal not in SIGNALS:
            raise UsageError(f"unknown mislabel signal {options.signal!r}; use one of {', '.join(SIGNALS)}")
        self.data = Path(data)
        self.options = options
        self.outdir = Path(outdir)
        #: non-fatal findings of the preparation (duplicate list lines, images in both splits)
        self.warnings: list[str] = []
        #: one line per image that could not be read (its file, the problem)
        self.failures: list[str] = []

    def prepare(self) -> SuspectsJob:
        """Open the dataset, check OUTDIR, load the nets and check that they know every label."""
        from fcnx.io.files import check_outdir
        from fcnx.jobs.crop import weights_identity

        o = self.options
        self.dataset: LabelledImages = open_dataset(self.data, o.split)
        self.warnings += self.dataset.warnings
        self.items = self.dataset.items
        if not self.items:
            raise UsageError(f"no images in the {o.split} split", self.data)
        self.outdir = check_outdir(self.outdir, [self.data])
        settings = {
            "version": 2,
            "nets": list(o.nets),
            "weights": weights_identity(o.nets, o.weights),
            "kernel": dict(o.kernel) if isinstance(o.kernel, Mapping) else o.kernel,
            "folds": str(Path(o.folds).resolve()) if o.folds is not None else None,
            "split": o.split,
        }
        self.journal = ResumeJournal(self.outdir, "fcnx suspects", JOURNAL, settings, OUTPUTS, _is_result).open()
        self.warnings += self.journal.warnings
        try:
            self.cropper = choose_models(o, self.items)
            unknown = sorted({str(i.label) for i in self.items} - set(self.cropper.classes))
            if unknown:
                raise UsageError(f"label(s) {', '.join(map(repr, unknown[:3]))} are not classes of the nets", self.data)
        except BaseException:
            self.journal.close()
            raise
        #: the images not scored yet (a killed run's journal holds the others)
        self.pending = [i for i in self.items if str(i.path) not in self.journal.done]
        #: the processes that judge the images (``--jobs``)
        self.plan = workers.Plan(1, (o.device,), 0)
        if o.jobs != 1:
            from fcnx.engine.devices import resolve_device

            self.plan = workers.plan(o.jobs, str(resolve_device(o.device)), len(self.pending))
        return self

    def run(self, progress: Callable[[], None] | None = None) -> list[Suspect]:
        """The suspects, most convincing first, written as ``suspects.csv``, ``.json`` and ``.html``, and every
        scored image's row of ``label_issues.csv`` (cleanlab's columns: :class:`LabelScore`);
        ``progress()`` after each image. Unreadable images (and missing listed files) go to ``failures``.
        Each image's score is journaled as it is known; a rerun scores only the :attr:`pending` ones (the
        signal and ``top`` may change between runs: they choose among the same scores)."""
        try:
            return self._run(progress)
        finally:
            self.journal.close()

    def _run(self, progress: Callable[[], None] | None) -> list[Suspect]:
        from fcnx.io.files import atomic_text, writing
        from fcnx.io.review_index import keep_index
        from fcnx.io.tables import write_csv
        from fcnx.jobs.outdir.outputs import JOURNAL as CROP_JOURNAL
        from fcnx.render.html import suspects_page

        o, out = self.options, self.outdir
        for record in self._judged():
            self.journal.add(record)
            if progress:
                progress()
        self.journal.compact(str(item.path) for item in self.items)  # worker processes: in the order done
        records = [self.journal.done[str(item.path)] for item in self.items]
        scores = [LabelScore.from_record(r) for r in records if "score" in r]
        failures = [r["error"] for r in records if "error" in r]
        top = o.top if o.top is not None or o.signal == "paper" else max(1, round(0.05 * len(self.items)))
        chosen = flagged(scores, o.signal, top)
        suspects = suspects_of(self.cropper, chosen, o.signal, top)
        self.failures = failures + self.dataset.missing_lines
        issues = {str(s.path) for s in chosen}
        rows = [s.as_dict() for s in suspects]
        summary = {"images": len(self.items), "signal": o.signal, "suspects": rows, "failures": self.failures}
        with writing(out):
            write_csv(out / OUTPUTS[0], FIELDS, rows)
            atomic_text(out / OUTPUTS[1], json.dumps(summary, indent=2))
            atomic_text(out / OUTPUTS[2], suspects_page(suspects, self.data.resolve(), SIGNAL_TEXT[o.signal]))
            write_csv(out / OUTPUTS[3], ISSUE_FIELDS, [s.issue_row(str(s.path) in issues) for s in scores])
        keep_index(out, out / CROP_JOURNAL, out / OUTPUTS[1])  # fcnx review opens it at once
        return suspects

    def _judged(self) -> Iterator[dict[str, Any]]:
        """Each pending image's line of ``suspects.jsonl``: in this process, in order, or in worker processes
        as they complete."""
        if self.plan.jobs == 1:
            yield from (judge(self.cropper, item) for item in self.pending)
            return
        task = JudgeTask(self.options, tuple(self.items) if self.options.folds is not None else ())
        for _, record in workers.run_in_workers(task, self.pending, self.plan, 1):
            yield record


def run_suspects(data: str | os.PathLike[str], options: SuspectsOptions, outdir: str | os.PathLike[str]) -> SuspectsJob:
    """Prepare the search of the dataset at ``data`` (:meth:`SuspectsJob.prepare`); :meth:`~SuspectsJob.run` it."""
    return SuspectsJob(data, options, outdir).prepare()
