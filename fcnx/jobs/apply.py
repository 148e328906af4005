"""``fcnx apply``: a crop run and its reviewers' decisions written as a new, cleaned dataset.

The source dataset is the one the run cropped (its images' paths less their paths in the run), in
its layout: a Food-101 root gives a Food-101 root (``images/<class>/``, ``meta/classes.txt``,
``meta/train.txt``, ``meta/test.txt``), class folders give class folders (``[train|test|val/]<class>/``).
Per image, the decisions in force (:func:`fcnx.io.decisions.merge` of ``OUTDIR/review.jsonl``,
``--decisions`` files and Label Studio exports) decide what is written (:data:`OUTCOMES`); images left
out are listed with their reason in ``meta/excluded.txt`` (class folders: ``excluded.txt``), lines
``<id>\\t<reason>`` (Food-101: ``<class>/<id>`` as in the meta lists; class folders: the path in the source).

The destination is new, empty, or an earlier apply's (its marker :data:`MARKER` lists the files it
wrote: they are replaced, those no longer wanted removed, nothing else touched); every file is written
atomically, and a rerun on the same inputs writes the same bytes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

from fcnx.errors import FcnxError, UsageError, one_line
from fcnx.io import labelstudio
from fcnx.io.datasets import SPLIT_FOLDERS, LabelledImages, few, open_dataset
from fcnx.io.decisions import REVIEW, Merged, Verdict, merge, read_decisions
from fcnx.io.decoding import open_upright
from fcnx.io.discovery import ImageItem, is_dataset_root
from fcnx.io.files import (
    LOCK,
    OutdirLock,
    atomic_bytes,
    atomic_text,
    check_outdir,
    read_regular,
    remove_temporaries,
    writing,
)
from fcnx.io.journal import read_records
from fcnx.io.record import CropRecord
from fcnx.jobs.outdir.encoding import encode_crop
from fcnx.jobs.outdir.pool import OrderedPool
from fcnx.method import geometry
from fcnx.method.geometry import XYWH

#: how images nobody reviewed are written
UNREVIEWED = ("crop", "original", "drop")
#: the record of what an apply wrote into its destination
MARKER = ".fcnx-apply.json"
SUMMARY = "apply-summary.json"
EXCLUDED = "excluded.txt"
JOURNAL = "boxes.jsonl"
#: what can happen to one image (its outcome) and what it means; the summary counts them
OUTCOMES = {
    "accepted": "the run's crop, accepted",
    "adjusted": "cut to the reviewer's box",
    "relabelled": "under the reviewer's class: cut to their box (or the run's, accepted), else the original",
    "original": "the crop rejected (reason crop): the original, uncropped",
    "unreviewed": "nobody decided: as --unreviewed says (the run's crop, the original, or left out)",
    "wrong_label": "left out: its label is wrong",
    "not_category": "left out: it shows none of the dataset's classes",
    "unusable": "left out: unusable (blurred, a collage, text)",
    "not_in_run": "left out: the run has no box for it (unreadable, or not cropped)",
    "unreadable": "left out: its file (or the run's crop) could not be read now",
}


@dataclass(frozen=True)
class Planned:
    """One source image's fate: class, outcome, form (``crop``, ``original``, ``None``: left out) and where it goes."""

    item: ImageItem
    split: str
    cls: str
    outcome: str
    form: str | None
    box: XYWH | None = None
    #: the run's crop file, copied when the box is the run's
    copy: Path | None = None
    size: tuple[int, int] | None = None
    name: PurePosixPath | None = None


@dataclass
class Applied:
    """What an apply did: the plan, the counts, and the lines to show."""

    layout: str
    plan: list[Planned]
    classes: list[str]
    merged: Merged
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, dict[str, int]]:
        """Per class (the image's class after review), images per outcome."""
        table: dict[str, dict[str, int]] = {}
        for p in self.plan:
            row = table.setdefault(p.cls, {})
            row[p.outcome] = row.get(p.outcome, 0) + 1
        return {
            cls: dict(sorted(row.items(), key=lambda kv: list(OUTCOMES).index(kv[0])))
            for cls, row in sorted(table.items())
        }

    def totals(self) -> dict[str, int]:
        totals = {key: 0 for key in OUTCOMES}
        for p in self.plan:
            totals[p.outcome] += 1
        return {k: v for k, v in totals.items() if v}

    @property
    def written(self) -> int:
        return sum(p.form is not None for p in self.plan)


# --------------------------------------------------------------------------- the run and its source


@dataclass(frozen=True, slots=True)
class RunRecord:
    """What apply keeps of one crop record: the image's path in the run, label, category, upright ``(height,
    width)``, box (upright pixels) and crop file (relative to OUTDIR)."""

    file: str
    label: str | None
    category: str
    size: tuple[int, int]
    box: XYWH
    crop: str | None

    @classmethod
    def of(cls, r: CropRecord) -> RunRecord:
        return cls(r.file, r.label, r.category, (r.height, r.width), (r.x, r.y, r.w, r.h), r.crop)


@dataclass(frozen=True)
class Run:
    """A crop OUTDIR: per source path its record (the one of its label's category, else its first), and the source root."""

    outdir: Path
    records: dict[str, RunRecord]
    root: Path
    warnings: list[str]


def read_run(outdir: Path) -> Run:
    """The records of ``outdir``'s ``boxes.jsonl`` and the dataset they were cropped from."""
    path = outdir / JOURNAL
    if not path.is_file():
        raise UsageError(f"not an output folder of fcnx crop (no {JOURNAL})", outdir)
    warnings: list[str] = []
    records: dict[str, RunRecord] = {}
    roots: set[Path] = set()
    lines = list(_slim(read_records(path, warnings), path, warnings))
    for root, (key, record) in lines:
        roots.add(root)
        kept = records.get(key)
        if kept is None or (kept.category != kept.label and record.category == record.label):
            records[key] = record
    if not records:
        raise UsageError("holds no crop record", path)
    if len(roots) > 1:
        raise UsageError(
            f"its images come from {len(roots)} folders ({few(sorted(map(str, roots)), 3)}): apply one dataset's run",
            path,
        )
    return Run(outdir, records, roots.pop(), warnings)


def _slim(
    lines: Iterator[tuple[int, CropRecord]], path: Path, warnings: list[str]
) -> Iterator[tuple[Path, tuple[str, RunRecord]]]:
    """Per crop record of ``lines``: the root its image's path implies, its path and :class:`RunRecord`; a record
    whose file is not the end of its path is a warning."""
    for number, record in lines:
        source, rel = Path(record.path), PurePosixPath(record.file)
        if not source.is_absolute() or source.parts[len(source.parts) - len(rel.parts) :] != rel.parts:
            warnings.append(f"{path}:{number}: its file {record.file!r} is not the end of its path, skipped")
            continue
        yield Path(*source.parts[: len(source.parts) - len(rel.parts)]), (record.path, RunRecord.of(record))


def source_splits(root: Path) -> list[tuple[str, LabelledImages]]:
    """The splits of the dataset at ``root`` and their images: ``train``/``test`` where it has them, else one ``""``."""
    if is_dataset_root(root):
        present = [s for s in ("train", "test") if (root / "meta" / f"{s}.txt").is_file()]
        return [(s, open_dataset(root, s)) for s in present] if present else [("", open_dataset(root, "all"))]
    present = [s for s, names in SPLIT_FOLDERS.items() if any((root / n).is_dir() for n in names)]
    return [(s, open_dataset(root, s)) for s in present] if present else [("", open_dataset(root, "all"))]


# --------------------------------------------------------------------------- decisions


def read_all_decisions(
    outdir: Path, files: Sequence[Path], exports: Sequence[Path], run: Run, splits: Sequence[tuple[str, LabelledImages]]
) -> tuple[Merged, list[str]]:
    """The merged decisions of ``OUTDIR/review.jsonl`` (if any), ``files`` and Label Studio ``exports``; warnings."""
    logs, warnings = [], []
    own = outdir / REVIEW
    for path in ([own] if own.exists() else []) + list(files):
        try:
            log = read_decisions(path)
        except OSError as exc:
            raise UsageError(f"cannot read decisions ({exc.strerror or exc})", path) from None
        if log.cut:
            warnings.append(f"{path}: the last line is cut short (a killed review?), dropped")
        warnings += [f"{path}:{number}: not a decision ({why}), set aside" for number, why in log.set_aside]
        logs.append(log.decisions)
    images = run_images(run, splits)
    for path in exports:
        imported = labelstudio.import_export(path, images)
        warnings += imported.skipped
        logs.append(imported.decisions)
    return merge(logs), warnings


def run_images(run: Run, splits: Sequence[tuple[str, LabelledImages]]) -> dict[str, labelstudio.RunImage]:
    """The run's images as the Label Studio reader matches them, with their labels in the source dataset."""
    labels = {str(item.path): item.label for _, data in splits for item in data.items}
    return {
        path: labelstudio.RunImage(path, r.file, r.size[1], r.size[0], labels.get(path, r.label), r.category)
        for path, r in run.records.items()
    }


def is_class_name(name: str) -> bool:
    """Whether ``name`` can be a class (a folder name and a line of ``classes.txt``)."""
    return (
        0 < len(name.encode("utf-8", "surrogateescape")) <= 255
        and name.isprintable()
        and name == name.strip()
        and "/" not in name
        and "\\" not in name
        and not name.startswith(".")
    )


# --------------------------------------------------------------------------- the plan


def plan_image(
    item: ImageItem, split: str, record: RunRecord | None, verdict: Verdict | None, unreviewed: str, outdir: Path
) -> Planned:
    """What becomes of one source image (see :data:`OUTCOMES`); ``record``: its crop record in ``outdir``."""
    label = str(item.label)
    if record is None:
        return Planned(item, split, label, "not_in_run", None)
    size, run_box = record.size, record.box
    crop = outdir / record.crop if record.crop else None

    def cut(cls: str, outcome: str, box: XYWH | None) -> Planned:
        copy = None if box is not None or crop is None else crop
        return Planned(item, split, cls, outcome, "crop", box or run_box, copy, size)

    if verdict is None or (verdict.action is None and verdict.box is None):
        if unreviewed == "drop":
            return Planned(item, split, label, "unreviewed", None)
        return (
            cut(label, "unreviewed", None)
            if unreviewed == "crop"
            else Planned(item, split, label, "unreviewed", "original")
        )
    cls = verdict.label or label
    moved = cls != label
    if verdict.action == "reject" and verdict.reason != "crop":
        return Planned(item, split, label, str(verdict.reason), None)
    if verdict.action == "reject":
        return Planned(item, split, cls, "relabelled" if moved else "original", "original")
    if verdict.action == "relabel" and verdict.box is None:
        return Planned(item, split, cls, "relabelled" if moved else "original", "original")
    return cut(cls, "relabelled" if moved else "adjusted" if verdict.box is not None else "accepted", verdict.box)


def _named(plan: list[Planned]) -> list[Planned]:
    """Each written image's path in the destination: its source path with its class folder changed; a name taken
    by another image (a relabel into a folder holding the same name) gets ``-<old class>``, then a number."""
    taken: set[tuple[str, str]] = set()  # (folder, stem): Food-101's lists name images without suffix
    order = sorted(range(len(plan)), key=lambda k: plan[k].cls != plan[k].item.label)  # those that stay first
    result: list[Planned | None] = [None] * len(plan)
    for k in order:
        p = plan[k]
        if p.form is None:
            result[k] = p
            continue
        rel = p.item.rel
        folder = rel.parent.parent / p.cls
        stem, suffix = rel.stem, rel.suffix
        candidate, n = stem, 1
        while (folder.as_posix(), candidate.lower()) in taken:
            n += 1
            candidate = f"{stem}-{p.item.label}" if n == 2 else f"{stem}-{p.item.label}-{n - 1}"
        taken.add((folder.as_posix(), candidate.lower()))
        result[k] = replace(p, name=folder / f"{candidate}{suffix}")
    return [p for p in result if p is not None]


def make_plan(
    splits: Sequence[tuple[str, LabelledImages]], run: Run, merged: Merged, unreviewed: str
) -> tuple[list[Planned], list[str]]:
    """Every source image's :class:`Planned` fate (in the dataset's order), and warnings on decisions skipped."""
    warnings = []
    verdicts = dict(merged.verdicts)
    for path, verdict in list(verdicts.items()):
        if verdict.label is not None and not is_class_name(verdict.label):
            warnings.append(f"{path}: relabel to {verdict.label!r}, which cannot be a class folder: skipped")
            del verdicts[path]
    known = {str(item.path) for _, data in splits for item in data.items}
    strangers = sorted(set(verdicts) - known)
    if strangers:
        warnings.append(
            f"{len(strangers)} decision(s) for images the dataset does not have, skipped: {few(strangers, 3)}"
        )
    outside = sorted(set(run.records) - known)
    if outside:
        warnings.append(
            f"{len(outside)} image(s) of the run are not in the dataset's lists, left out: {few(outside, 3)}"
        )
    plan = [
        plan_image(item, split, run.records.get(str(item.path)), verdicts.get(str(item.path)), unreviewed, run.outdir)
        for split, data in splits
        for item in data.items
    ]
    return plan, warnings


# --------------------------------------------------------------------------- writing


def _image_bytes(p: Planned) -> bytes:
    """The bytes of one written image: the source file (original), the run's crop (copied) or a new cut."""
    if p.form == "original":
        return read_regular(p.item.path)
    if p.copy is not None:
        return read_regular(p.copy)
    assert p.box is not None and p.size is not None
    original = open_upright(p.item.path)
    if (original.height, original.width) != p.size:
        raise FcnxError(f"is {original.width}x{original.height} now, {p.size[1]}x{p.size[0]} in the run", p.item.path)
    return encode_crop(original, geometry.pixel_box(p.box, p.size), p.item.path)


def _write_image(dest: Path, p: Planned) -> None:
    assert p.name is not None
    try:
        data = _image_bytes(p)
    except OSError as exc:
        raise FcnxError(f"cannot read ({exc.strerror or exc})", p.copy or p.item.path) from None
    target = dest / p.name
    try:
        if target.is_file() and not target.is_symlink() and read_regular(target) == data:
            return  # a rerun: the same bytes are there already
    except OSError:
        pass
    atomic_bytes(target, data)


def _previous(dest: Path) -> set[str]:
    """The files an earlier apply wrote into ``dest`` (its marker); a destination that holds other files and no
    marker is refused, before anything is written there."""
    marker = dest / MARKER
    if not marker.exists():
        if any(p.name != LOCK for p in dest.iterdir()):
            raise UsageError(
                "holds files that fcnx apply did not write: choose a new or empty folder (it never writes over them)",
                dest,
            )
        return set()
    try:
        listed = json.loads(read_regular(marker))["files"]
        return {f for f in listed if isinstance(f, str) and ".." not in PurePosixPath(f).parts}
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        raise UsageError(f"unreadable {MARKER}; remove it or choose another folder", dest) from None


def _remove_stale(dest: Path, stale: set[str]) -> None:
    for rel in sorted(stale):
        path = dest / rel
        if path.is_file() or path.is_symlink():
            path.unlink()
            for folder in PurePosixPath(rel).parents[:-1]:
                if any((dest / folder).iterdir()):
                    break
                (dest / folder).rmdir()


def _lists(applied: Applied, source_classes: Sequence[str]) -> dict[str, str]:
    """The text files of the destination besides the images: relative path -> content."""
    kept = [p for p in applied.plan if p.form is not None]
    present = {p.cls for p in kept}
    classes = [c for c in source_classes if c in present] + sorted(present - set(source_classes))
    applied.classes = classes
    lost = [c for c in source_classes if c not in present]
    if lost:
        applied.warnings.append(f"{len(lost)} class(es) keep no image and are left out: {few(lost)}")
    files: dict[str, str] = {}
    if applied.layout == "food101":
        files["meta/classes.txt"] = "".join(f"{c}\n" for c in classes)
        for split in sorted({p.split for p in applied.plan} - {""}):
            lines = [f"{p.cls}/{PurePosixPath(p.name or '').stem}" for p in kept if p.split == split]
            files[f"meta/{split}.txt"] = "".join(f"{line}\n" for line in lines)
            empty = [c for c in classes if not any(p.cls == c for p in kept if p.split == split)]
            if empty:
                applied.warnings.append(f"{len(empty)} class(es) have no image in meta/{split}.txt: {few(empty)}")
        excluded = [
            (f"{p.item.label}/{PurePosixPath(*p.item.rel.parts[2:]).with_suffix('')}", p.outcome)
            for p in applied.plan
            if p.form is None
        ]
        files[f"meta/{EXCLUDED}"] = "".join(f"{name}\t{why}\n" for name, why in excluded)
    else:
        files[EXCLUDED] = "".join(f"{p.item.rel}\t{p.outcome}\n" for p in applied.plan if p.form is None)
    return files


def summary(applied: Applied, source: Path, outdir: Path, unreviewed: str) -> dict[str, Any]:
    """``apply-summary.json``: what was applied, counts per outcome and per class, disagreements, warnings."""
    return {
        "source": str(source),
        "run": str(outdir),
        "layout": applied.layout,
        "unreviewed": unreviewed,
        "images": len(applied.plan),
        "written": applied.written,
        "outcomes": applied.totals(),
        "meaning": {outcome: OUTCOMES[outcome] for outcome in applied.totals()},
        "classes": applied.counts(),
        "disagreements": applied.merged.disagreements,
        "warnings": applied.warnings,
        "errors": applied.errors,
    }


def apply(
    outdir: Path,
    dest: Path,
    *,
    unreviewed: str = "crop",
    decisions: Sequence[Path] = (),
    exports: Sequence[Path] = (),
    threads: int = 4,
    progress: Callable[[int], None] | None = None,
    start: Callable[[int], None] | None = None,
) -> Applied:
    """Write the cleaned dataset of the crop run ``outdir`` into ``dest`` (see the module).

    ``start(n)`` is called with the number of images to write, ``progress(k)`` after each ``k``.
    Images that cannot be read are left out and listed in ``errors``.
    """
    if unreviewed not in UNREVIEWED:
        raise UsageError(f"unknown --unreviewed {unreviewed!r}; use one of {', '.join(UNREVIEWED)}")
    outdir = Path(os.path.abspath(outdir))
    run = read_run(outdir)
    splits = source_splits(run.root)
    merged, warnings = read_all_decisions(outdir, decisions, exports, run, splits)
    plan, plan_warnings = make_plan(splits, run, merged, unreviewed)
    layout = "food101" if is_dataset_root(run.root) else "folders"
    applied = Applied(layout, _named(plan), [], merged, run.warnings + warnings + plan_warnings)
    if applied.written == 0:
        raise UsageError("no image would be left in the cleaned dataset", outdir)
    out = check_outdir(dest, [run.root, outdir])
    _previous(out)  # refused before the lock file is made
    with writing(out), OutdirLock(out, "fcnx apply"):
        previous = _previous(out)
        remove_temporaries(out)
        kept = [p for p in applied.plan if p.form is not None]
        images = {str(p.name) for p in kept}
        wanted = images | {SUMMARY} | {f"meta/{n}.txt" for n in ("classes", "train", "test", "excluded")} | {EXCLUDED}
        taken = sorted(rel for rel in wanted - previous if os.path.lexists(out / rel))
        if taken:
            raise UsageError(
                f"holds {few(taken, 3)}, not written by fcnx apply: it never replaces them; move them or choose "
                f"another folder",
                out,
            )
        atomic_text(out / MARKER, json.dumps({"files": sorted(previous | wanted)}, indent=0) + "\n")  # claimed first
        if start is not None:
            start(len(kept))
        pool: OrderedPool[Planned, None] = OrderedPool(threads, "fcnx-apply")
        failed: set[str] = set()

        def settle(finished: list[tuple[Planned, Exception | None]]) -> None:
            for p, outcome in finished:
                if isinstance(outcome, FcnxError):
                    applied.errors.append(str(outcome))
                    failed.add(str(p.name))
                elif isinstance(outcome, Exception):
                    raise outcome
                if progress is not None:
                    progress(1)

        try:
            for p in kept:
                settle(pool.submit(p, lambda p=p: _write_image(out, p)))  # type: ignore[misc]
            settle(pool.drain())
        finally:
            pool.close()
        if failed:
            applied.plan = [
                replace(p, outcome="unreadable", form=None) if p.form and str(p.name) in failed else p
                for p in applied.plan
            ]
        texts = _lists(applied, list(dict.fromkeys(c for _, data in splits for c in data.classes)))
        texts[SUMMARY] = json.dumps(summary(applied, run.root, outdir, unreviewed), indent=1, ensure_ascii=False) + "\n"
        for rel, text in texts.items():
            atomic_text(out / rel, text)
        final = {str(p.name) for p in applied.plan if p.form is not None} | set(texts)
        _remove_stale(out, (previous | wanted) - final)
        atomic_text(out / MARKER, json.dumps({"files": sorted(final)}, indent=0) + "\n")
    return applied


def describe(applied: Applied) -> list[str]:
    """The summary lines ``fcnx apply`` prints: totals per outcome, then the classes whose images changed."""
    lines = [f"{outcome:>13}: {count}" for outcome, count in applied.totals().items()]
    changed = {cls: row for cls, row in applied.counts().items() if set(row) - {"accepted", "unreviewed"}}
    for cls, row in list(changed.items())[:20]:
        lines.append(one_line(f"  {cls}: " + ", ".join(f"{k} {v}" for k, v in row.items())))
    if len(changed) > 20:
        lines.append(f"  ... {len(changed) - 20} more class(es) changed: see {SUMMARY}")
    return lines


def import_labelstudio(outdir: Path, export: Path) -> tuple[int, labelstudio.Imported]:
    """Append the decisions of the Label Studio ``export`` to ``OUTDIR/review.jsonl`` (those already there are not
    appended again: importing twice appends nothing); returns how many were appended and what was read."""
    from fcnx.io.decisions import append_decision

    run = read_run(Path(os.path.abspath(outdir)))
    imported = labelstudio.import_export(export, run_images(run, source_splits(run.root)))
    review = run.outdir / REVIEW
    try:
        there = (
            {json.dumps(d.as_dict(), sort_keys=True) for d in read_decisions(review).decisions}
            if review.exists()
            else set()
        )
    except OSError as exc:
        raise UsageError(f"cannot read decisions ({exc.strerror or exc})", review) from None
    appended = 0
    with writing(review):
        for decision in imported.decisions:
            key = json.dumps(decision.as_dict(), sort_keys=True)
            if key not in there:
                append_decision(review, decision)
                there.add(key)
                appended += 1
    return appended, imported
