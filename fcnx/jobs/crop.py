"""The crop job: find categories in many images with an ensemble and write crops, resumably.

One streaming job for the CLI, benchmarks and notebooks alike::

    from fcnx import CropOptions, run_crop

    job = run_crop(["photos/"], "out/", CropOptions(nets=["efficientnet_lite0"], kernel=224, categories=["espresso"]))
    for image in job:          # one ImageResult per image, as it is written
        print(image.item.path, image.error or image.records[0].votes)
    print(job.summary)         # counts, failures, seconds per stage

:func:`run_crop` does the preparation stages (find the images, check OUTDIR, load the nets,
settings, open OUTDIR) and returns the prepared :class:`CropJob`; iterating it runs the images
through the local or Ray engine and writes each one's outputs (:class:`~fcnx.jobs.outdir.outputs.CropOutputs`);
the tables are written when the stream ends, is closed, or is stopped by :meth:`CropJob.stop`
(Ctrl-C, ``SIGTERM``: see :func:`~fcnx.io.processes.stop_on_signals`).
"""

from __future__ import annotations

import hashlib
import os
import signal
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from fcnx.engine.options import CropOptions
from fcnx.errors import Terminated, UsageError
from fcnx.io.discovery import ImageItem
from fcnx.io.record import CropRecord

if TYPE_CHECKING:
    from fcnx.engine.cropper import Cropper

__all__ = ["CropJob", "CropOptions", "CropSummary", "ImageResult", "run_crop"]


@dataclass(frozen=True)
class ImageResult:
    """One image done: its records (one per category, as in ``boxes.jsonl``), or a one-line error."""

    item: ImageItem
    records: list[CropRecord] | None = None
    error: str | None = None


@dataclass
class CropSummary:
    """What a run did. ``seconds``: wall time per stage (``nets``: decoding and the engine, ``write``:
    files and journal, ``finish``: tables); ``forward_seconds``: in the nets' forward passes (with
    ``profile``). ``stopped``: the signal that stopped the run (``SIGINT``, ``SIGTERM``), if any;
    ``disk_full``: the disk filled up (the run stopped; what was written is whole); ``write_errors``:
    outputs of the end of the run (tables, pages) that could not be written."""

    pending: int = 0
    skipped: int = 0
    own_outputs: int = 0
    done: int = 0
    boxes: int = 0
    not_found: int = 0
    failures: list[str] = field(default_factory=list)
    write_errors: list[str] = field(default_factory=list)
    stopped: signal.Signals | None = None
    disk_full: bool = False
    fail_fast: bool = False
    seconds: dict[str, float] = field(default_factory=lambda: {"nets": 0.0, "write": 0.0, "finish": 0.0})
    wall: float = 0.0
    forward_seconds: float = 0.0
    jobs: int = 1
    ray: dict[str, Any] | None = None


def file_digest(path: Path) -> str:
    """The SHA-256 of the file at ``path``, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_identity(nets: Sequence[str], weights: Mapping[str, str | Path]) -> dict[str, str]:
    """Per net, what identifies its weights: a file's SHA-256 (shipped files too) or a hub tag."""
    from fcnx.backbones.registry import get_backbone
    from fcnx.engine.fcn import weight_file

    identity = {}
    for net in nets:
        value = weights.get(net, "pretrained")
        path = weight_file(get_backbone(net), value)
        identity[net] = f"sha256:{file_digest(path)}" if path is not None and path.is_file() else f"tag:{value}"
    return identity


class CropJob:
    """One crop run over ``inputs`` into ``outdir``; :meth:`prepare` it, then iterate it (see the module)."""

    def __init__(
        self,
        inputs: Sequence[str | os.PathLike[str]],
        outdir: str | os.PathLike[str],
        options: CropOptions,
        cropper: Cropper | None = None,
    ) -> None:
        self.inputs = [Path(p) for p in inputs]
        self.outdir = Path(outdir)
        self.options = options
        self.summary = CropSummary()
        #: warnings met while preparing (nets trained at another size, journal lines set aside)
        self.warnings: list[str] = []
        self._stream: Generator[ImageResult, None, None] | None = None
        self._given = cropper
        self._pool: Any = None  # the worker processes (--jobs), started while the parent prepares

    # ------------------------------------------------------------------ preparation stages

    def prepare(self) -> CropJob:
        """Find the images, check OUTDIR, load the nets, open OUTDIR (locked) and find what is left to do."""
        self._find_images()
        from fcnx.io.files import OutdirLock, check_outdir

        self.out = check_outdir(self.outdir, self.inputs, in_place=self.options.in_place)
        self.lock = OutdirLock(self.out, "fcnx crop")
        self.lock.acquire()  # before anything in OUTDIR is touched
        try:
            self._load_nets()
            self._open_outputs()
        except BaseException:
            if self._pool is not None:
                self._pool.close()
            self.lock.release()
            raise
        return self

    def _find_images(self) -> None:
        from fcnx.io import discovery
        from fcnx.jobs.outdir.naming import entries, is_own_output
        from fcnx.jobs.outdir.outputs import RESERVED

        items = discovery.discover(self.inputs, self.options.split)
        if self.options.in_place:  # crops and heatmaps of an earlier run are outputs, not inputs
            real_out = Path(os.path.realpath(self.outdir))
            kept = [i for i, e in zip(items, entries(i.path for i in items)) if not is_own_output(e, real_out)]
            self.summary.own_outputs, items = len(items) - len(kept), kept
        if not items:
            raise UsageError("no images found in " + ", ".join(str(p) for p in self.inputs))
        clash = next((i for i in items if i.rel.parts[0] in RESERVED or i.rel.parts[0].startswith("gallery-")), None)
        if clash is not None:
            raise UsageError(
                f"the output {clash.rel} would collide with fcnx's own files in OUTDIR ({', '.join(RESERVED)}); "
                f"give the folder that contains it as INPUT instead",
                clash.path,
            )
        self.items = items

    def _load_nets(self) -> None:
        o = self.options
        self.local = o.engine == "local"
        from fcnx.jobs.workers import Plan

        if self._given is not None:
            self.cropper, self.ensemble, self.device = self._given, self._given.ensemble, self._given.ensemble.device
            self.plan = Plan(1, (str(self.device),), 0)
        else:
            self._build_cropper()
        #: what runs the nets (``onnxruntime``, ``openvino bf16``...; ``auto`` on Ray: each actor chooses)
        self.runs_on = self._runs_on()
        if self.cropper.categories is None:
            unknown = sorted({i.label for i in self.items if i.label is not None} - set(self.cropper.classes))
            if unknown:
                raise UsageError(
                    f"{len(unknown)} dataset label(s) are not classes of the nets, e.g. "
                    f"{', '.join(repr(u) for u in unknown[:3])}; pass --category to choose one"
                )

    def _build_cropper(self) -> None:
        from fcnx.engine.cropper import Cropper
        from fcnx.engine.devices import resolve_device
        from fcnx.engine.ensemble import load_ensemble
        from fcnx.engine.fcn import trained_size
        from fcnx.jobs import workers as processes

        o = self.options
        # the Ray engine's driver loads the nets on its CPU only for their classes and geometry
        self.device = resolve_device(o.device if self.local else "cpu")
        self.plan = processes.Plan(1, (str(self.device),), 0)
        if self.local and (o.jobs is None or o.jobs > 1):
            if isinstance(o.kernel, int):
                self.plan = processes.plan(o.jobs, str(self.device), len(self.items))
                if self.plan.jobs > 1:  # they import their frameworks while this process loads the nets
                    self._pool = processes.Pool(self.plan)
            elif o.jobs is not None:
                self.warnings.append(f"--jobs {o.jobs}: nets at their own kernels run in one process")
        # the Ray driver and the parent of worker processes run no image: their nets run on torch, unexported
        driver = not self.local or self.plan.jobs > 1
        self.ensemble = load_ensemble(
            o.nets,
            o.weights,
            kernel=o.kernel,
            device=self.device,
            half=o.half and self.local,
            compile=o.compile and self.local,
            backend="torch" if driver else o.backend,
            precision="fp32" if driver else o.precision,
        )
        self.ensemble.timed = o.profile
        for name, fcn in zip(o.nets, self.ensemble.fcns):
            size = trained_size(name, o.weights.get(name, "pretrained"))
            if size is not None and size != fcn.kernel:
                self.warnings.append(
                    f"{name} was trained at {size} px and runs at kernel {fcn.kernel}; the paper fine-tunes "
                    f"every net at the common kernel"
                )
        self.cropper = Cropper(self.ensemble, o, workers=o.decode_workers)

    def _runs_on(self) -> str:
        """What runs the nets, checked (a missing runtime is refused now, and exported once, not by every worker)."""
        ensemble = self.ensemble
        o = self.options
        if not self.local:  # what the actors are told (auto: each resolves it on its own device)
            return o.backend + ("" if o.precision == "fp32" else f" {o.precision}")
        if self.plan.jobs == 1:
            return ensemble.backend + ("" if ensemble.precision == "fp32" else f" {ensemble.precision}")
        from fcnx.jobs.workers import workers_runtime

        return workers_runtime(ensemble, self.device.type, o.backend, o.precision, o.compile)

    def settings(self) -> dict[str, Any]:
        """The options' settings form (:meth:`CropOptions.settings`): an OUTDIR made with other settings is refused."""
        o = self.options
        return o.settings(self.cropper, weights_identity(o.nets, o.weights), self.runs_on)

    def meta_copies(self) -> list[tuple[Path, PurePosixPath]]:
        """The dataset lists of dataset-root inputs, and where they go in OUTDIR (none in place or dry)."""
        from fcnx.io import discovery

        if self.options.dry_run or self.options.in_place:  # in place, the lists are there (and name the originals)
            return []
        base = discovery.output_base(self.inputs)
        copies = []
        for root in (Path(os.path.abspath(p)) for p in self.inputs):
            if root.is_dir() and discovery.is_dataset_root(root):
                prefix = PurePosixPath(root.relative_to(base).as_posix())
                lists = sorted(m for m in (root / "meta").glob("*.txt") if m.is_file())  # not a FIFO: it would block
                copies += [(m, prefix / "meta" / m.name) for m in lists]
        return copies

    def _open_outputs(self) -> None:
        from fcnx.jobs.outdir.outputs import CropOutputs

        o = self.options
        categories = len(self.cropper.categories or [None])
        self.outputs = CropOutputs(
            self.out,
            self.settings(),
            net_names=self.ensemble.names,
            kernel=self.ensemble.kernel,
            stride=self.ensemble.stride,
            expected_boxes=range(categories, categories * o.instances + 1),
            options=o,
            protected=[item.path for item in self.items],
            meta_copies=self.meta_copies(),
            lock=self.lock,
        )
        self.outputs.open()
        self.warnings += self.outputs.warnings
        self.pending = [item for item in self.items if not self.outputs.done(item)]
        self.summary.pending = len(self.pending)
        self.summary.skipped = len(self.items) - len(self.pending)

    # ------------------------------------------------------------------ the stream

    def __iter__(self) -> Iterator[ImageResult]:
        if self._stream is None:
            self._stream = self._run()
        return self._stream

    def run(self) -> CropSummary:
        """Run every image (Ctrl-C and ``SIGTERM`` stop it cleanly); returns the summary."""
        from fcnx.io.processes import stop_on_signals

        with stop_on_signals():
            try:
                for _ in self:
                    pass
            except KeyboardInterrupt as exc:
                self.stop(exc)
        return self.summary

    def stop(self, interrupt: KeyboardInterrupt) -> None:
        """End the stream after ``interrupt`` (the images in flight are written, then the tables)."""
        self.summary.stopped = signal.SIGTERM if isinstance(interrupt, Terminated) else signal.SIGINT
        if self._stream is None:  # never started: nothing to write, release OUTDIR
            if self._pool is not None:
                self._pool.close()
            self.outputs.close()
            self._stream = _empty_stream()
        self._stream.close()

    def _engine(self) -> Iterator[Any]:
        o = self.options
        if self.local and self.plan.jobs == 1:
            return self.cropper.crop_items(self.pending)
        if self.local:
            from fcnx.jobs.workers import WorkerStats, crop_in_workers

            self._worker_stats = WorkerStats()
            return crop_in_workers(
                o.portable(), self.pending, self.plan, self.cropper.batch_size, self._worker_stats, self._pool
            )
        from fcnx.jobs.ray import RayStats, crop_on_ray

        self._ray_stats = RayStats()
        return crop_on_ray(o, self.pending, stats=self._ray_stats)

    def _run(self) -> Generator[ImageResult, None, None]:
        from fcnx.engine.results import CropFailure

        summary, seconds = self.summary, self.summary.seconds
        results = self._engine()
        start = time.perf_counter()
        try:
            while True:
                tick = time.perf_counter()
                result = next(results, None)
                seconds["nets"] += time.perf_counter() - tick
                if result is None:
                    break
                if isinstance(result, CropFailure):
                    yield self._count(ImageResult(result.item, error=result.error))
                else:
                    yield from self._write(self.outputs.submit, result)
                if self._should_stop():
                    break
            yield from self._write(lambda _: self.outputs.flush(), None)
        finally:
            results.close()  # type: ignore[attr-defined]
            summary.wall = time.perf_counter() - start
            self._finish()

    def _write(self, step: Callable[[Any], list[Any]], result: Any) -> list[ImageResult]:
        """The images ``step`` finished writing, counted in the summary at once (even if the stream stops)."""
        from fcnx.jobs.outdir.outputs import DiskFull

        tick = time.perf_counter()
        outcomes = step(result)
        self.summary.seconds["write"] += time.perf_counter() - tick
        images = []
        for o in outcomes:
            image = ImageResult(o.result.item, o.records, None if o.error is None else str(o.error))
            if isinstance(o.error, DiskFull):  # not the image's failure: the run stops, a rerun does it
                self.summary.disk_full = True
                images.append(image)
            else:
                images.append(self._count(image))
        return images

    def _count(self, image: ImageResult) -> ImageResult:
        if image.error is not None:
            self.summary.failures.append(image.error)
        else:
            assert image.records is not None
            self.summary.done += 1
            self.summary.not_found += sum(not r.found for r in image.records)
        return image

    def _should_stop(self) -> bool:
        if self.summary.disk_full:
            return True
        if self.options.fail_fast and self.summary.failures:
            self.summary.fail_fast = True
            return True
        return False

    def _finish(self) -> None:
        tick = time.perf_counter()
        try:
            self.summary.write_errors = self.outputs.finish(self.summary.failures, order=self.items)
        finally:
            self.summary.seconds["finish"] = time.perf_counter() - tick
            self.summary.disk_full = self.outputs.full is not None
        self.summary.boxes = self.outputs.journal.count
        self.summary.jobs = self.plan.jobs
        if self.local and self.plan.jobs > 1:
            self.summary.forward_seconds = self._worker_stats.forward_seconds
        elif self.local:
            self.summary.forward_seconds = self.ensemble.forward_seconds
        else:
            stats = self._ray_stats
            self.summary.forward_seconds = stats.forward_seconds
            self.summary.ray = {"actors": stats.actors, "gpus": stats.gpus, "busy_seconds": stats.busy_seconds}


def _empty_stream() -> Generator[ImageResult, None, None]:
    """An empty stream (of a job stopped before it started)."""
    yield from ()


def run_crop(
    inputs: Sequence[str | os.PathLike[str]],
    outdir: str | os.PathLike[str],
    options: CropOptions,
    cropper: Cropper | None = None,
) -> CropJob:
    """The prepared crop job of ``inputs`` into ``outdir``: iterate it for per-image results, or call ``.run()``.

    ``cropper``: an already built :class:`~fcnx.engine.cropper.Cropper` to run (local engine) instead
    of loading ``options.nets``; ``options.nets``/``weights`` must still name its nets (they identify
    the boxes' settings).

    Raises :class:`~fcnx.errors.UsageError` (nothing written) for bad inputs, options, nets or OUTDIR,
    including an OUTDIR another run holds.
    """
    return CropJob(inputs, outdir, options, cropper).prepare()
