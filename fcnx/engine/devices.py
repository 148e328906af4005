"""``--device auto|cpu|cuda[:N]|mps`` resolved to a torch device, with a clear error if absent."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from fcnx.errors import UsageError

if TYPE_CHECKING:
    import torch

DEVICE_HELP = "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps"


def resolve_device(name: str = "auto") -> torch.device:
    """The torch device for ``name``; :class:`UsageError` if it is malformed or not available here."""
    import torch

    name = name.strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", name)
    if match:
        if not torch.cuda.is_available():
            raise UsageError(f"device {name!r} requested but CUDA is not available on this machine")
        index = int(match.group(1) or 0)
        if index >= torch.cuda.device_count():
            raise UsageError(f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
        return torch.device("cuda", index)
    if name == "mps":
        if not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
            raise UsageError("device 'mps' requested but MPS is not available on this machine")
        return torch.device("mps")
    raise UsageError(f"unknown device {name!r}; use {DEVICE_HELP}")


def default_batch_size(device: torch.device) -> int:
    """Images per forward pass when none is given: 8 on a GPU, 1 on the CPU (where one image fills the cores)."""
    return 1 if device.type == "cpu" else 8
