"""The suspects job: images the ensemble suggests are mislabelled, ranked, as tables and a page to review.

One job for the CLI and the library alike::

    from fcnx import SuspectsOptions, run_suspects

    job = run_suspects("food-101/", SuspectsOptions(nets=["efficientnet_lite0"], kernel=224), "review/")
    suspects = job.run()        # Suspect list, most convincing first; review/suspects.{csv,json,html}

:func:`find_suspects` is the search on its own, for any :class:`~fcnx.engine.cropper.Cropper` and items.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fcnx.errors import FcnxError, UsageError
from fcnx.io.datasets import LabelledImages, open_dataset
from fcnx.io.images import ImageItem
from fcnx.jobs.resume import ResumeJournal
from fcnx.method.geometry import XYWH

if TYPE_CHECKING:
    from fcnx.engine.cropper import Cropper
    from fcnx.engine.ensemble import KernelChoice

#: what each mislabel signal means, for the page
SIGNAL_TEXT = {
    "paper": "No net finds the label at any scale",
    "graded": "The label is less likely than another class, anywhere in the image (largest gap first)",
}
#: columns of ``suspects.csv``
FIELDS = ["path", "label", "other_category", "other_votes", "other_mean_confidence", "gap", "x", "y", "w", "h"]

#: the files a run writes into its output folder (never one it did not write: :class:`~fcnx.jobs.settings.SettingsFile`)
OUTPUTS = ("suspects.csv", "suspects.json", "suspects.html")
#: the journal of the images judged (:class:`~fcnx.jobs.resume.ResumeJournal`): a killed run resumes from it
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


#: one image's verdict: ``{"found": bool}`` (the paper's signal: some net votes for the label), ``{"gap": float}``
#: (the graded one: :func:`label_gap`), or the one-line error of an image that could not be read
Verdict = dict[str, Any] | str


def judge_items(
    cropper: Cropper, items: Iterable[ImageItem], signal: str = "paper"
) -> Iterator[tuple[ImageItem, Verdict]]:
    """Each of ``items`` with its :data:`Verdict` under ``signal``, as it is known (the paper's signal: not in
    input order, images are batched by size)."""
    from fcnx.engine.results import CropFailure

    if signal not in SIGNALS:
        raise UsageError(f"unknown mislabel signal {signal!r}; use one of {', '.join(SIGNALS)}")
    if signal == "paper":
        for result in cropper.crop_items(items):
            if isinstance(result, CropFailure):
                yield result.item, result.error
            else:
                yield result.item, {"found": bool(result.boxes[0].found)}
        return
    for item in items:
        try:
            if item.label is None:
                raise FcnxError("it has no label", item.path)
            yield item, {"gap": float(label_gap(*cropper.label_levels(item, item.label)[2:4]))}
        except FcnxError as exc:
            yield item, str(exc)


def is_verdict(value: object, signal: str) -> bool:
    """Whether ``value`` (read back from a journal) is a :data:`Verdict` under ``signal``."""
    if isinstance(value, str):
        return True
    key, kind = ("found", bool) if signal == "paper" else ("gap", float)
    return isinstance(value, dict) and set(value) == {key} and type(value[key]) is kind


def suspects_of(
    cropper: Cropper, judged: Sequence[tuple[ImageItem, Verdict]], signal: str = "paper", top: int | None = None
) -> tuple[list[Suspect], list[str]]:
    """The suspects among images ``judged`` (:func:`judge_items`), most convincing first (at most ``top``), and
    the errors of the images that could not be read, in the order given."""
    failures = [verdict for _, verdict in judged if isinstance(verdict, str)]
    if signal == "paper":
        flagged: list[tuple[ImageItem, float | None]] = [
            (item, None) for item, v in judged if isinstance(v, dict) and not v["found"]
        ]
    else:
        by_path = {str(item.path): item for item, v in judged if isinstance(v, dict)}
        gaps = {str(item.path): v["gap"] for item, v in judged if isinstance(v, dict)}
        flagged = [(by_path[key], gaps[key]) for key in rank_by_gap(gaps, top)]
    suspects = []
    for item, gap in flagged:
        seen = cropper.crop_image(item.path).boxes[0]  # no category, no label: the top class
        suspects.append(
            Suspect(
                item.path,
                item.label or "",
                seen.category,
                seen.votes,
                seen.mean_confidence,
                (seen.x, seen.y, seen.w, seen.h),
                gap,
            )
        )
    return rank_suspects(suspects)[:top], failures


def find_suspects(
    cropper: Cropper,
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
    judged = []
    for item, verdict in judge_items(cropper, items, signal):
        judged.append((item, verdict))
        if progress:
            progress()
    return suspects_of(cropper, judged, signal, top)


@dataclass(frozen=True)
class SuspectsOptions:
    """What to search with (see ``fcnx suspects --help``). ``top``: at most this many (default: all for
    the paper's signal, 5 % of the images for the graded one)."""

    nets: Sequence[str]
    weights: dict[str, str] = field(default_factory=dict)
    kernel: KernelChoice = 299
    split: str = "all"
    signal: str = "paper"
    top: int | None = None
    device: str = "auto"


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
            "version": 1,
            "nets": list(o.nets),
            "weights": weights_identity(o.nets, o.weights),
            "kernel": dict(o.kernel) if isinstance(o.kernel, Mapping) else o.kernel,
            "split": o.split,
            "signal": o.signal,
        }
        valid = lambda record: is_verdict(record.get("verdict"), o.signal)  # noqa: E731
        self.journal = ResumeJournal(self.outdir, "fcnx suspects", JOURNAL, settings, OUTPUTS, valid).open()
        self.warnings += self.journal.warnings
        try:
            self._load_nets()
        except BaseException:
            self.journal.close()
            raise
        #: the images not judged yet (a killed run's journal holds the others)
        self.pending = [i for i in self.items if str(i.path) not in self.journal.done]
        return self

    def _load_nets(self) -> None:
        from fcnx.engine.cropper import Cropper
        from fcnx.engine.devices import resolve_device
        from fcnx.engine.ensemble import load_ensemble

        o = self.options
        ensemble = load_ensemble(o.nets, o.weights, kernel=o.kernel, device=resolve_device(o.device))
        self.cropper = Cropper(ensemble)
        unknown = sorted({str(i.label) for i in self.items} - set(self.cropper.classes))
        if unknown:
            raise UsageError(f"label(s) {', '.join(map(repr, unknown[:3]))} are not classes of the nets", self.data)

    def run(self, progress: Callable[[], None] | None = None) -> list[Suspect]:
        """The suspects, most convincing first, written as ``suspects.csv``, ``.json`` and ``.html``;
        ``progress()`` after each image. Unreadable images (and missing listed files) go to ``failures``.
        Each image's verdict is journaled as it is known; a rerun judges only the :attr:`pending` ones."""
        try:
            return self._run(progress)
        finally:
            self.journal.close()

    def _run(self, progress: Callable[[], None] | None) -> list[Suspect]:
        from fcnx.io.files import atomic_text, writing
        from fcnx.io.tables import write_csv
        from fcnx.render.html import suspects_page

        o, out = self.options, self.outdir
        for item, verdict in judge_items(self.cropper, self.pending, o.signal):
            self.journal.add({"path": str(item.path), "verdict": verdict})
            if progress:
                progress()
        judged = [(item, self.journal.done[str(item.path)]["verdict"]) for item in self.items]
        top = o.top if o.top is not None or o.signal == "paper" else max(1, round(0.05 * len(self.items)))
        suspects, failures = suspects_of(self.cropper, judged, o.signal, top)
        self.failures = failures + self.dataset.missing_lines
        rows = [s.as_dict() for s in suspects]
        summary = {"images": len(self.items), "signal": o.signal, "suspects": rows, "failures": self.failures}
        with writing(out):
            write_csv(out / OUTPUTS[0], FIELDS, rows)
            atomic_text(out / OUTPUTS[1], json.dumps(summary, indent=2))
            atomic_text(out / OUTPUTS[2], suspects_page(suspects, self.data.resolve(), SIGNAL_TEXT[o.signal]))
        return suspects


def run_suspects(data: str | os.PathLike[str], options: SuspectsOptions, outdir: str | os.PathLike[str]) -> SuspectsJob:
    """Prepare the search of the dataset at ``data`` (:meth:`SuspectsJob.prepare`); :meth:`~SuspectsJob.run` it."""
    return SuspectsJob(data, options, outdir).prepare()
