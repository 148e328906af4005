"""How the FCNs run: ``torch`` (the reference), or a CPU runtime on the net exported once and cached on disk.

The one interface the :class:`~fcnx.engine.ensemble.Ensemble` calls is a *runner*: a callable from RGB pixels
``N x 3 x H x W`` in ``[0, 255]`` to logits ``N x classes x h x w`` (a torch :class:`~fcnx.engine.fcn.FCN` is
one). :func:`runner` builds one for a backend and precision. A job's options carry the choice (``--backend``,
``--precision``) to every ensemble it builds, in this process, its worker processes and Ray actors.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fcnx.errors import UsageError

if TYPE_CHECKING:
    from fcnx.engine.fcn import FCN

#: ``torch``: eager PyTorch, the reference; the others run the FCN exported to ONNX, on the CPU
BACKENDS = ("torch", "openvino", "onnxruntime")
#: what ``--backend`` accepts: a backend, or ``auto`` (:func:`resolve`)
CHOICES = ("auto", *BACKENDS)
#: the exact CPU runtimes ``auto`` takes, the fastest first (measured: docs/performance.md)
CPU_ORDER = ("onnxruntime", "openvino")
PRECISIONS = ("fp32", "bf16")
#: the pip extra that installs each runtime
EXTRAS = {"openvino": "openvino", "onnxruntime": "onnx"}
#: CPU flags that mean native bf16 arithmetic (AVX-512 BF16 or AMX)
BF16_FLAGS = ("avx512_bf16", "amx_bf16")

#: what runs the nets unless told otherwise: torch, the reference, in fp32
DEFAULT_BACKEND = "torch"
DEFAULT_PRECISION = "fp32"

Runner = Callable[[Any], Any]


@functools.cache
def native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU computes in bf16 natively (its flags list AVX-512 BF16 or AMX)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return any(flag in flags for flag in BF16_FLAGS)


def installed(backend: str) -> bool:
    """Whether ``backend``'s runtime can be imported here (torch always can)."""
    return backend == "torch" or importlib.util.find_spec(backend) is not None


def resolve(backend: str, device_type: str, precision: str = "fp32", *, exportable: bool = True) -> str:
    """The backend ``auto`` stands for (any other is returned as it is).

    On a CUDA or MPS device: ``torch``. On the CPU: the first installed runtime of :data:`CPU_ORDER`
    (``bf16``: ``openvino``, the one that runs it), skipping OpenVINO where jemalloc is preloaded, else
    ``torch``; ``torch`` too for nets the runtimes cannot run (``exportable`` false: not PyTorch, or
    compiled). Every one of them gives torch's boxes in fp32 (docs/performance.md).
    """
    if backend != "auto":
        return backend
    if device_type != "cpu" or not exportable:
        return "torch"
    if precision == "bf16":
        return "openvino"
    jemalloc = "jemalloc" in os.environ.get("LD_PRELOAD", "")
    return next((b for b in CPU_ORDER if installed(b) and not (b == "openvino" and jemalloc)), "torch")


def check(backend: str, precision: str, device_type: str) -> str:
    """The precision ``backend`` will run at; :class:`UsageError` for a combination that cannot run.

    ``bf16`` needs ``openvino`` and a CPU with native bf16; without the latter one line says so and
    the nets run in fp32.
    """
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if backend != "torch" and device_type != "cpu":
        raise UsageError(f"--backend {backend} runs the nets on the CPU; add --device cpu or use --backend torch")
    if precision == "bf16" and backend != "openvino":
        raise UsageError("--precision bf16 needs --backend openvino")
    preloaded = os.environ.get("LD_PRELOAD", "")
    if backend == "openvino" and "jemalloc" in preloaded:
        raise UsageError(
            f"--backend openvino aborts in a process with jemalloc preloaded (LD_PRELOAD={preloaded}): its "
            f"plugins free memory jemalloc gave; unset LD_PRELOAD, or use --backend onnxruntime or torch"
        )
    if precision == "bf16" and not native_bf16():
        print("fcnx: this CPU has no native bf16 (AVX-512 BF16 or AMX); running the nets in fp32", file=sys.stderr)
        return "fp32"
    return precision


def dynamic_padding(net: Any) -> bool:
    """Whether ``net`` holds timm's TF-"same" layers, which pad by each input's size at run time."""
    try:
        from timm.layers.conv2d_same import Conv2dSame
        from timm.layers.pool2d_same import AvgPool2dSame, MaxPool2dSame
    except ImportError:
        return False
    return any(isinstance(m, (Conv2dSame, MaxPool2dSame, AvgPool2dSame)) for m in net.modules())


def runner(fcn: FCN, backend: str, precision: str = "fp32", threads: int | None = None) -> Runner:
    """What runs ``fcn`` on ``backend`` at ``precision`` (checked by :func:`check`); ``fcn`` itself for torch.

    ``threads``: the runtime's threads (default: torch's intra-op thread count).
    """
    if backend == "torch":
        return fcn
    from fcnx.engine.backends import runtimes

    return runtimes.build(fcn, backend, precision, threads)
