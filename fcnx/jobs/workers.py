"""``--jobs N``: the nets of ``fcnx crop``, ``evaluate`` and ``suspects`` in N worker processes on this machine;
the parent keeps OUTDIR.

The parent lists the images, holds OUTDIR's lock, journals each image's result and writes every output
exactly as one process does. Each worker (a spawned process: no state of the parent's threads or runtimes
is inherited) builds what its :class:`Task` needs (:class:`CropTask`: the parent's cropper from its
:class:`~fcnx.engine.options.CropOptions`; ``fcnx.jobs.evaluate.ScoreTask``, ``fcnx.jobs.suspects.JudgeTask``)
on its own device and number of threads, on the backend the task names, and sends back each image's result
(:func:`run_in_workers`). Images go out in input order, a few batches per worker in flight; results come
back as they complete, and the journal is put in input order at the end (as with Ray), so the outputs are
the bytes one process writes.

Workers never open OUTDIR, ignore Ctrl-C (the parent stops them after writing what came back), and die
with the parent (:func:`fcnx.io.processes.die_with_parent`: ``PR_SET_PDEATHSIG`` on Linux, a watchdog elsewhere).
"""

from __future__ import annotations

import dataclasses
import os
import queue
import signal
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from fcnx.errors import FcnxError
from fcnx.io.discovery import ImageItem
from fcnx.io.processes import die_with_parent

#: batches of images a worker has in flight (one being cropped, one waiting)
IN_FLIGHT = 2
#: resident memory to count per CPU worker when ``--jobs auto`` sizes the pool (the default ensemble on
#: ONNX Runtime peaked at 2.0-2.6 GiB in one process: docs/performance.md)
WORKER_MEMORY = 3 << 30
#: seconds between checks that every worker is alive while waiting for results
POLL = 1.0


@dataclass(frozen=True)
class Plan:
    """How many processes run the nets, on which devices, with how many threads each (``jobs == 1``: in
    the parent, as before ``--jobs``)."""

    jobs: int
    devices: tuple[str, ...]
    threads: int


def cpu_count() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def available_memory(meminfo: str = "/proc/meminfo") -> int | None:
    """Bytes of memory available to new processes (Linux ``MemAvailable``), ``None`` where unknown."""
    try:
        with open(meminfo, encoding="ascii") as f:
            line = next((line for line in f if line.startswith("MemAvailable:")), None)
    except OSError:
        return None
    return None if line is None else int(line.split()[1]) * 1024


def plan(jobs: int | None, device: str, images: int) -> Plan:
    """The processes for ``jobs`` (``None``: auto) on ``device`` (resolved: ``cpu``, ``cuda``, ``cuda:N``, ``mps``).

    auto: on a CPU one single-thread worker per core (at most one per :data:`WORKER_MEMORY` of available
    memory), on CUDA one per GPU when ``device`` names none (``cuda``), else one process; never more
    workers than ``images``. An explicit N > 1 on the CPU splits the cores among the N workers.
    """
    import torch

    cores = cpu_count()
    gpus = torch.cuda.device_count() if device == "cuda" else 0
    if jobs is None:
        if device == "cpu":
            memory = available_memory()
            jobs = cores if memory is None else max(1, min(cores, memory // WORKER_MEMORY))
        else:
            jobs = max(1, gpus)
    jobs = max(1, min(jobs, images))
    if jobs == 1:
        return Plan(1, (device,), torch.get_num_threads())
    devices = tuple(f"cuda:{k % gpus}" for k in range(jobs)) if gpus else (device,) * jobs
    return Plan(jobs, devices, max(1, cores // jobs))


class Task(Protocol):
    """What worker processes run (a picklable object: it travels to each worker once)."""

    def start(self, device: str) -> Callable[[list[ImageItem]], Iterator[tuple[ImageItem, Any, float]]]:
        """Build what the work needs on ``device`` (nets...); returns the function that does a batch of items,
        yielding each item (the object it was given) with its result and its seconds in forward passes."""
        ...


@dataclass(frozen=True)
class CropTask:
    """``fcnx crop`` in a worker: the parent's cropper, each item decoded and cropped (a ``CropResult`` or
    ``CropFailure``)."""

    options: Any  # a fcnx.engine.options.CropOptions (weights as absolute paths)

    def start(self, device: str) -> Callable[[list[ImageItem]], Iterator[tuple[ImageItem, Any, float]]]:
        from fcnx.engine.cropper import Cropper
        from fcnx.engine.decode import decode

        cropper = Cropper.from_options(self.options, device)
        ensemble = cropper.ensemble

        def run(items: list[ImageItem]) -> Iterator[tuple[ImageItem, Any, float]]:
            before = ensemble.forward_seconds
            for result in cropper.crop_decoded((item, decode(item, cropper.min_side)) for item in items):
                yield result.item, result, ensemble.forward_seconds - before
                before = ensemble.forward_seconds

        return run


def workers_runtime(ensemble: Any, device_type: str, backend: str, precision: str, compile: bool = False) -> str:
    """What will run ``ensemble``'s nets in the workers at ``backend`` and ``precision`` (``onnxruntime``,
    ``openvino bf16``...), checked now: a missing runtime is refused in the parent, and the nets are exported
    once here, not by every worker."""
    import torch

    from fcnx.engine import backends

    exportable = not compile and all(isinstance(f.net, torch.nn.Module) for f in ensemble.fcns)
    backend = backends.resolve(backend, device_type, precision, exportable=exportable)
    precision = backends.check(backend, precision, device_type)
    if backend != "torch":
        from fcnx.engine.backends import runtimes
        from fcnx.engine.backends.onnx_cache import onnx_file

        runtimes.runtime(backend)
        for fcn in ensemble.fcns:
            onnx_file(fcn)
    return backend + ("" if precision == "fp32" else f" {precision}")


def _serve(device: str, threads: int, parent: int, setup: Any, tasks: Any, results: Any) -> None:
    """A worker: import the nets' frameworks, take its :class:`Task` from ``setup`` (``None``: end), then
    do each batch of ``(index, item)`` from ``tasks`` until ``None``; put ``(index, result, forward seconds)``
    on ``results``, or ``(-1, error line, 0.0)`` and stop when something breaks."""
    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent decides
    try:
        import torch

        import fcnx.engine.cropper  # noqa: F401  (imported while the parent prepares: most of a worker's start)

        torch.set_num_threads(threads)
        task = setup.get()
        if task is None:
            return
        run = task.start(device)
        for batch in iter(tasks.get, None):
            position = {id(item): index for index, item in batch}
            for item, result, seconds in run([item for _, item in batch]):
                results.put((position[id(item)], result, seconds))
    except BaseException as exc:  # the parent stops the run with this line
        results.put((-1, f"a worker process failed: {type(exc).__name__}: {exc}", 0.0))


class Pool:
    """The worker processes of ``plan``, started ahead of their work: each imports torch and fcnx's engine (a few
    seconds, most of its start) while the parent prepares, then waits for its :class:`Task` (:meth:`run`).
    :meth:`close` ends them; they end with the parent in any case."""

    def __init__(self, plan: Plan) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self.tasks, self.results = context.Queue(), context.Queue()
        self.setups = [context.SimpleQueue() for _ in plan.devices]  # one each: every worker gets the task once
        self.workers = [
            context.Process(
                target=_serve,
                args=(device, plan.threads, os.getpid(), setup, self.tasks, self.results),
                name=f"fcnx-worker-{k}",
                daemon=True,
            )
            for k, (device, setup) in enumerate(zip(plan.devices, self.setups))
        ]
        for worker in self.workers:
            worker.start()
        self._used = False

    def run(
        self, task: Task, items: Sequence[ImageItem], batch: int, stats: WorkerStats | None = None
    ) -> Iterator[tuple[int, Any]]:
        """Do ``task`` on ``items``: ``(index in items, result)`` as they complete (see :func:`run_in_workers`);
        the pool is closed at the end (once used, it is done)."""
        assert not self._used, "a pool runs one task"
        self._used = True
        items = list(items)
        try:
            if not items:
                return
            stats = stats if stats is not None else WorkerStats()
            for setup in self.setups:
                setup.put(task)
            yield from self._exchange(items, batch, stats)
            for _ in self.workers:
                self.tasks.put(None)
        finally:
            self.close()

    def _exchange(self, items: list[ImageItem], batch: int, stats: WorkerStats) -> Iterator[tuple[int, Any]]:
        workers, tasks = self.workers, self.tasks
        numbered = list(enumerate(items))
        batches = iter([numbered[k : k + batch] for k in range(0, len(numbered), batch)])
        sent = 0
        for chunk in _take(batches, IN_FLIGHT * len(workers)):
            tasks.put(chunk)
            sent += len(chunk)
        received = 0
        while received < len(items):
            try:
                index, result, seconds = self.results.get(timeout=POLL)
            except queue.Empty:
                dead = next((w for w in workers if not w.is_alive()), None)
                if dead is not None:
                    raise FcnxError(
                        f"a worker process ended (exit code {dead.exitcode}); run again to resume"
                    ) from None
                continue
            if index < 0:
                raise FcnxError(result)
            received += 1
            stats.forward_seconds += seconds
            yield index, result
            if sent - received < IN_FLIGHT * len(workers) * batch:
                for chunk in _take(batches, 1):
                    tasks.put(chunk)
                    sent += len(chunk)

    def close(self) -> None:
        """End every worker (at once if still busy) and the queues' feeder threads."""
        for setup in self.setups:  # a worker still waiting for its task
            setup.put(None)
        for worker in self.workers:
            worker.join(timeout=0.5 if worker.exitcode is None else 0)
            if worker.is_alive():
                worker.kill()
                worker.join()
        for q in (self.tasks, self.results):
            q.cancel_join_thread()
            q.close()


@dataclass
class WorkerStats:
    """Filled in while :func:`run_in_workers` runs: the workers' seconds in forward passes."""

    forward_seconds: float = 0.0


def crop_in_workers(
    options: Any,
    items: Sequence[ImageItem],
    plan: Plan,
    batch: int,
    stats: WorkerStats | None = None,
    pool: Pool | None = None,
) -> Iterator[Any]:
    """Crop ``items`` in ``plan.jobs`` worker processes: a ``CropResult`` or ``CropFailure`` per image, as
    they complete (:func:`run_in_workers`)."""
    items = list(items)
    for index, result in run_in_workers(CropTask(options), items, plan, batch, stats, pool):
        yield dataclasses.replace(result, item=items[index])  # the parent's item (paths as given)


def run_in_workers(
    task: Task,
    items: Sequence[ImageItem],
    plan: Plan,
    batch: int,
    stats: WorkerStats | None = None,
    pool: Pool | None = None,
) -> Iterator[tuple[int, Any]]:
    """Do ``task`` on ``items`` in ``plan.jobs`` worker processes (``pool``, if started already): ``(index in
    items, result)`` as they complete.

    ``batch``: images sent to a worker at a time. The workers run the nets on the backend ``task`` names.
    Closing the iterator stops the workers (what is in flight is
    dropped: a rerun does it)."""
    if pool is None and not items:
        return iter(())
    return (pool or Pool(plan)).run(task, items, batch, stats)


def _take(iterator: Iterator[Any], count: int) -> list[Any]:
    return [chunk for _, chunk in zip(range(count), iterator)]
