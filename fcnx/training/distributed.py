"""Multi-process training under ``torchrun``: who this process is, its device, and summed counters.

``torchrun --nproc_per_node N -m fcnx train ...`` starts N copies with ``RANK``, ``LOCAL_RANK`` and
``WORLD_SIZE`` in their environment; :func:`context` joins them into one process group (NCCL
on CUDA, gloo on the CPU). Without those variables everything here is a no-op for one process.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from fcnx.engine.devices import resolve_device
from fcnx.errors import UsageError


@dataclass(frozen=True)
class Context:
    """This process's place in the run."""

    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def main(self) -> bool:
        """The process that writes files and shows progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def context(device: str = "auto") -> Context:
    """This process's :class:`Context`; under ``torchrun`` joins the process group first.

    Under ``torchrun`` with CUDA, process ``LOCAL_RANK`` takes ``cuda:LOCAL_RANK`` (``--device``
    must then be ``auto`` or ``cuda``).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Context(0, 1, 0, resolve_device(device))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda":
        if device not in ("auto", "cuda"):
            raise UsageError(
                f"under torchrun each process takes cuda:LOCAL_RANK; use cuda, not {device!r}", parameter="device"
            )
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Context(rank, world, local_rank, dev)


def sum_all(values: Sequence[float], ctx: Context) -> list[float]:
    """Element-wise sums of ``values`` over all processes (the values themselves for one process)."""
    if not ctx.distributed:
        return list(values)
    tensor = torch.tensor(list(values), dtype=torch.float64, device=ctx.device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def gather_all(values: Sequence[Any], ctx: Context) -> list[Any]:
    """The concatenated ``values`` of all processes, in rank order (the values themselves for one process)."""
    if not ctx.distributed:
        return list(values)
    parts: list[Any] = [None] * ctx.world
    dist.all_gather_object(parts, list(values))
    return [value for part in parts for value in part]


def wrap(model: torch.nn.Module, ctx: Context) -> Any:
    """The model wrapped in DistributedDataParallel (its trainable parameters as they are now), or itself."""
    if not ctx.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)


def barrier(ctx: Context) -> None:
    if ctx.distributed:
        dist.barrier()


def finish(ctx: Context) -> None:
    """Leave the process group (end of run)."""
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()
