"""A few threads doing one job's slow steps (encoding, writing) while the main thread goes on; results in order."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

K = TypeVar("K")
R = TypeVar("R")


class OrderedPool(Generic[K, R]):
    """``threads`` threads; :meth:`submit` and :meth:`drain` hand back finished work in submission order,
    as ``(key, result or the exception it raised)``."""

    def __init__(self, threads: int, name: str = "fcnx") -> None:
        self.threads = max(1, threads)
        self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix=name)
        self._inflight: list[tuple[K, Future[R]]] = []

    def submit(self, key: K, work: Callable[[], R]) -> list[tuple[K, R | Exception]]:
        """Queue ``work``; returns what finished meanwhile, waiting while more than ``4 * threads`` are queued."""
        self._inflight.append((key, self._pool.submit(work)))
        return self.drain(limit=4 * self.threads)

    def drain(self, limit: int = 0) -> list[tuple[K, R | Exception]]:
        """What has finished, in order; waits until at most ``limit`` are queued (0: all)."""
        finished: list[tuple[K, R | Exception]] = []
        while self._inflight and (len(self._inflight) > limit or self._inflight[0][1].done()):
            key, future = self._inflight.pop(0)
            try:
                finished.append((key, future.result()))
            except Exception as exc:
                finished.append((key, exc))
        return finished

    def close(self) -> None:
        """Wait for queued work (its results are dropped) and stop the threads."""
        self._pool.shutdown(wait=True)
