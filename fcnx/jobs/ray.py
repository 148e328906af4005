"""``--engine ray``: the crop engine spread over a Ray cluster with Ray Data.

The driver (``fcnx crop`` or :func:`crop_on_ray`) keeps everything that touches OUTDIR: it lists
the images, skips the done ones, and writes crops, ``boxes.jsonl`` and the table from the results
exactly as the local engine does (:mod:`fcnx.jobs.outdir.outputs`). Ray only decides *where*
:meth:`fcnx.engine.cropper.Cropper.crop_decoded` runs: in a pool of actors, each holding a
:class:`~fcnx.engine.cropper.Cropper` (one actor per GPU with ``num_gpus=1``; on a cluster without GPUs,
one actor per CPU, one torch thread each). Each actor batches the images of a Ray Data batch by
size, as the local engine does. With GPU actors, images are decoded by Ray Data tasks on the CPUs;
CPU actors decode their own images (the nets already keep every core busy).

Every node needs fcnx, its plugins and the weight files at the same paths, and must see the
images at the paths the driver gives (a shared file system).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import pickle
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fcnx.errors import FcnxError, UsageError, one_line
from fcnx.io.discovery import ImageItem

if TYPE_CHECKING:
    from fcnx.engine.options import CropOptions

INSTALL_HINT = "the Ray engine needs Ray: pip install 'fcnx[ray]'"


def import_ray() -> Any:
    """The ``ray`` module (with Ray Data), or a :class:`UsageError` saying how to install it."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise UsageError(INSTALL_HINT) from None
    return ray


@dataclasses.dataclass
class RayStats:
    """Filled in while :func:`crop_on_ray` runs: actors, their kind, and in all of them together the seconds
    of forward passes, the seconds spent cropping batches and the CPU seconds of that."""

    actors: int = 0
    gpus: bool = False
    forward_seconds: float = 0.0
    busy_seconds: float = 0.0
    cpu_seconds: float = 0.0


def _decode_batch(batch: dict[str, np.ndarray], min_side: int) -> dict[str, np.ndarray | list[bytes]]:
    """Ray Data task: decode the images of a batch (pickled ``(pixels 3 x h x w uint8, size, source)`` or the error)."""
    from fcnx.engine.decode import decode

    decoded = []
    for raw in batch["item"]:
        image = decode(pickle.loads(raw), min_side)
        decoded.append(pickle.dumps(image if isinstance(image, str) else (image[0].numpy(), *image[1:])))
    return {"index": batch["index"], "given": batch["given"], "item": batch["item"], "decoded": decoded}


class CropActor:
    """Ray Data actor: a cropper on this actor's device; crops one batch of images, batched by size."""

    def __init__(self, options: CropOptions, device: str) -> None:
        import torch

        from fcnx.engine.cropper import Cropper

        if device == "cpu":
            torch.set_num_threads(1)
        self.cropper = Cropper.from_options(options, device)
        self.cropper.ensemble.timed = options.profile

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        from fcnx.engine.decode import decode

        items = [pickle.loads(raw) for raw in batch["item"]]
        position = {id(item): int(index) for item, index in zip(items, batch["index"])}
        if "decoded" in batch:
            stream = ((item, _unpack(raw)) for item, raw in zip(items, batch["decoded"]))
        else:
            stream = ((item, decode(item, self.cropper.min_side)) for item in items)
        ensemble = self.cropper.ensemble
        before, start, cpu = ensemble.forward_seconds, time.perf_counter(), time.process_time()
        results = list(self.cropper.crop_decoded(stream))
        times = [[0.0] * len(results) for _ in range(3)]
        times[0][0], times[1][0] = ensemble.forward_seconds - before, time.perf_counter() - start
        times[2][0] = time.process_time() - cpu
        return {
            "index": [position[id(r.item)] for r in results],
            "result": [pickle.dumps(r) for r in results],
            "forward_seconds": times[0],
            "busy_seconds": times[1],
            "cpu_seconds": times[2],
        }


def _unpack(raw: bytes) -> Any:
    import torch

    image = pickle.loads(raw)
    if isinstance(image, str):
        return image
    pixels, size, source = image
    return torch.from_numpy(pixels), size, source


class EvaluateActor:
    """Ray Data actor: :func:`fcnx.jobs.scoring.evaluate` of a batch of images (the result comes with its first row)."""

    def __init__(
        self, options: CropOptions, device: str, boxes: Any = None, crop: bool = False, batch_size: int | None = None
    ) -> None:
        import torch

        from fcnx.engine.cropper import Cropper
        from fcnx.engine.devices import default_batch_size
        from fcnx.jobs import scoring

        if device == "cpu":
            torch.set_num_threads(1)
        cropper = Cropper.from_options(options, device)
        self.ensemble = cropper.ensemble
        self.batch_size = batch_size or default_batch_size(torch.device(device))
        self.box_of = boxes.box_of if boxes is not None else (scoring.crops_of(cropper) if crop else None)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        from fcnx.jobs.scoring import evaluate

        items = [pickle.loads(raw) for raw in batch["item"]]
        before, start, cpu = self.ensemble.forward_seconds, time.perf_counter(), time.process_time()
        try:
            outcome: Any = evaluate(self.ensemble, items, self.box_of, batch_size=self.batch_size)
        except UsageError as exc:  # raised again by the driver
            outcome = exc
        else:  # each skipped image: its index, and its line naming the file as the driver was given it
            located = []
            for line in outcome.skipped:
                k = next((k for k, item in enumerate(items) if line.startswith(f"{one_line(item.path)}: ")), None)
                located.append(
                    (-1, line)
                    if k is None
                    else (int(batch["index"][k]), str(batch["given"][k]) + line[len(str(items[k].path)) :])
                )
            outcome.skipped = located
        times = [[0.0] * len(items) for _ in range(3)]
        times[0][0], times[1][0] = self.ensemble.forward_seconds - before, time.perf_counter() - start
        times[2][0] = time.process_time() - cpu
        return {
            "index": batch["index"],
            "result": [pickle.dumps(outcome)] + [pickle.dumps(None)] * (len(items) - 1),
            "forward_seconds": times[0],
            "busy_seconds": times[1],
            "cpu_seconds": times[2],
        }


def crop_on_ray(
    options: CropOptions,
    items: Sequence[ImageItem],
    *,
    decode_tasks: bool | None = None,
    stats: RayStats | None = None,
) -> Iterator[Any]:
    """Crop ``items`` on a Ray cluster with ``options``: a :class:`~fcnx.engine.results.CropResult` or ``CropFailure``
    per image, as they complete.

    Joins the cluster at ``options.address`` (default: ``RAY_ADDRESS``, else a new local one) unless Ray is
    already initialised; a cluster it started is shut down when the iterator ends or is closed.
    ``options.device``: ``auto`` (GPU actors when the cluster has GPUs), ``cpu`` or ``cuda``. ``options.actors``:
    default one per GPU, else one per CPU. ``decode_tasks``: decode in Ray Data tasks rather than in
    the actors (default: with GPU actors). ``options.profile``: synchronise around forward passes so that
    ``stats.forward_seconds`` is exact on a GPU.
    """
    import torch

    from fcnx.engine.decode import min_decode_side
    from fcnx.engine.devices import default_batch_size
    from fcnx.engine.results import CropFailure

    ray = import_ray()
    items = list(items)
    if not items:
        return
    stats = stats if stats is not None else RayStats()
    with _cluster(ray, options.address):
        use_gpus, count = _plan(ray, options.device, options.actors, options.half)
        stats.actors, stats.gpus = count, use_gpus
        batch_size = options.batch_size or default_batch_size(torch.device("cuda" if use_gpus else "cpu"))
        decode = use_gpus if decode_tasks is None else decode_tasks
        assert isinstance(options.kernel, int)  # CropOptions refuses any other kernel on Ray
        min_side = min_decode_side(options.kernel, options.max_scale)
        kwargs = {"options": options.portable(), "device": "cuda" if use_gpus else "cpu"}
        # a Ray Data batch: the images an actor sorts by size into batches of batch_size
        rows = _stream(ray, items, CropActor, kwargs, use_gpus, count, 4 * batch_size, min_side if decode else None)
        for index, result, (forward, busy, cpu) in rows:
            stats.forward_seconds += forward
            stats.busy_seconds += busy
            stats.cpu_seconds += cpu
            item = items[index]
            if isinstance(result, CropFailure):  # name the file as the driver was given it
                result = CropFailure(item, result.error.replace(str(result.item.path), str(item.path), 1))
            yield dataclasses.replace(result, item=item)


def evaluate_on_ray(
    options: CropOptions,
    items: Sequence[ImageItem],
    *,
    boxes: Any = None,
    crop: bool = False,
    batch_size: int | None = None,
    address: str | None = None,
    device: str = "auto",
    actors: int | None = None,
    progress: Callable[[], None] | None = None,
    report: Callable[[str], None] | None = None,
) -> Any:
    """:func:`fcnx.jobs.scoring.evaluate` of ``items`` on a Ray cluster: the same :class:`~fcnx.jobs.scoring.Evaluation`.

    ``options``: the nets (their ``weights`` as absolute paths), ``backend`` and ``precision``.
    ``boxes``: a :class:`~fcnx.jobs.scoring.BoxIndex` to score crops from; ``crop``: crop each image
    for its label in the actors. The actors score batches of images; the driver adds up their
    counts and lists the skipped images in input order. Cluster, ``device`` and ``actors``: as
    :func:`crop_on_ray`.
    """
    from fcnx.jobs.scoring import Evaluation, Scores

    ray = import_ray()
    items = list(items)
    if not items:
        names = list(options.nets) + (["ensemble"] if len(options.nets) > 1 else [])
        return Evaluation(names, {n: Scores() for n in names}, {n: Scores() for n in names} if boxes or crop else {})
    total: Any = None  # an Evaluation whose skipped are (index, line) pairs until sorted below
    with _cluster(ray, address):
        use_gpus, count = _plan(ray, device, actors, options.half)
        kwargs = {
            "options": options,
            "device": "cuda" if use_gpus else "cpu",
            "boxes": boxes,
            "crop": crop,
            "batch_size": batch_size,
        }
        for _index, outcome, _seconds in _stream(ray, items, EvaluateActor, kwargs, use_gpus, count, 32, None):
            if isinstance(outcome, UsageError):
                raise outcome
            if outcome is not None:
                for _, line in outcome.skipped:
                    if report:
                        report(line)
                if total is None:
                    total = outcome
                else:
                    total.merge(outcome)
            if progress:
                progress()
    total.skipped = [line for _, line in sorted(total.skipped, key=lambda pair: pair[0])]  # input order
    return total


@contextlib.contextmanager
def _cluster(ray: Any, address: str | None) -> Iterator[None]:
    """Join or start a cluster unless Ray is initialised already; shut down one that was started here, and give
    back the signal handlers ``ray.init`` replaces (its SIGTERM handler would outlive the cluster)."""
    started = not ray.is_initialized()
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    if started:
        try:
            ray.init(address=address, logging_level="WARNING", include_dashboard=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UsageError(
                f"cannot start or join the Ray cluster at {address or 'a new local instance'} ({exc})"
            ) from None
    try:
        yield
    finally:
        if started:
            ray.shutdown()
            if threading.current_thread() is threading.main_thread():
                for sig, handler in handlers.items():
                    if handler is not None:
                        signal.signal(sig, handler)


def _plan(ray: Any, device: str, actors: int | None, half: bool) -> tuple[bool, int]:
    """Whether the actors take GPUs, and how many actors: one per GPU, else one per CPU, unless ``actors``."""
    if device not in ("auto", "cpu", "cuda"):
        raise UsageError(
            f"--engine ray runs on the cluster's GPUs or CPUs: use --device auto, cpu or cuda, not {device!r}"
        )
    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 0))
    use_gpus = device == "cuda" or (device == "auto" and gpus > 0)
    if use_gpus and gpus < 1:
        raise UsageError("cuda: the Ray cluster has no GPU", parameter="device")
    if half and not use_gpus:
        raise UsageError(
            "half precision needs GPU actors, and the Ray cluster has no GPU (or the device is cpu)", parameter="half"
        )
    return use_gpus, actors or (gpus if use_gpus else max(1, cpus))


def _stream(
    ray: Any,
    items: list[ImageItem],
    actor: type,
    kwargs: dict[str, Any],
    use_gpus: bool,
    count: int,
    rows: int,
    decode_min_side: int | None,
) -> Iterator[tuple[int, Any, tuple[float, float, float]]]:
    """Run ``actor`` over ``items`` with Ray Data, at most ``rows`` images a batch.

    Yields ``(index, outcome, (forward, busy, CPU seconds))``; the seconds of a batch come with its first image.

    ``decode_min_side``: decode in Ray Data tasks first (on CPUs), at least that short side.
    """
    rows = max(1, min(rows, -(-len(items) // (4 * count))))  # at least 4 batches an actor, to balance the load
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # fcnx prints its own progress
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    records = [
        {
            "index": k,
            "given": str(item.path),
            "item": pickle.dumps(dataclasses.replace(item, path=Path(os.path.abspath(item.path)))),
        }
        for k, item in enumerate(items)
    ]
    dataset = ray.data.from_items(records, override_num_blocks=max(1, -(-len(records) // rows)))
    if decode_min_side is not None:
        dataset = dataset.map_batches(
            _decode_batch, fn_kwargs={"min_side": decode_min_side}, batch_size=rows, num_cpus=1
        )
    resources = {"num_gpus": 1} if use_gpus else {"num_cpus": 1}
    dataset = dataset.map_batches(
        actor,
        fn_constructor_kwargs=kwargs,
        batch_size=rows,
        compute=ray.data.ActorPoolStrategy(size=count),
        **resources,
    )
    try:
        for row in dataset.iter_rows():
            seconds = (float(row["forward_seconds"]), float(row["busy_seconds"]), float(row["cpu_seconds"]))
            yield int(row["index"]), pickle.loads(row["result"]), seconds
    except ray.exceptions.RayError as exc:
        raise FcnxError(f"the Ray engine failed: {_last_line(exc)}") from exc


def _last_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(exc).__name__
