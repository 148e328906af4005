"""Runners on CPU runtimes (OpenVINO, ONNX Runtime): the exported FCN, compiled once per process.

ONNX Runtime also gets a session for each input shape that has run :data:`STATIC_AFTER` times on the
dynamic one (a pyramid level of a recurring image size): its free dimensions fixed, it gave the same
logits about 1.27x faster in ``fcnx crop``, for 0.1 s to make and some MiB per Lite net and shape (their
activations share one memory arena), so the process keeps at most :data:`STATIC_SESSIONS`, the least
recently used put out first.
OpenVINO's static shapes gained too little for their compile time (docs/performance.md).
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from fcnx.engine.backends import EXTRAS, Runner
from fcnx.engine.backends.onnx_cache import onnx_file
from fcnx.errors import UsageError

if TYPE_CHECKING:
    from fcnx.engine.fcn import FCN

#: runs of one input shape on ONNX Runtime's dynamic session before it gets a session of its own
STATIC_AFTER = 4
#: per-shape sessions kept in the process, over all nets: three image sizes' pyramids of the default ensemble
#: (sharing one arena, a session holds about 38 MiB: docs/performance.md)
STATIC_SESSIONS = 63

_Key = tuple[Path, int, tuple[int, ...]]
_static: OrderedDict[_Key, Any] = OrderedDict()  # (file, threads, input shape) -> its session
_runs: OrderedDict[_Key, int] = OrderedDict()  # runs on the dynamic session of shapes without one


def runtime(backend: str) -> Any:
    """``backend``'s module (``openvino`` or ``onnxruntime``), or a :class:`UsageError` saying how to install it."""
    try:
        if backend == "openvino":
            import openvino

            return openvino
        import onnxruntime

        return onnxruntime
    except ImportError:
        raise UsageError(f"--backend {backend} needs {backend}: pip install 'fcnx[{EXTRAS[backend]}]'") from None


@functools.cache
def _compiled(backend: str, path: Path, precision: str, threads: int) -> Any:
    """The compiled model of one exported file (cached: each net compiles once per process)."""
    module = runtime(backend)
    if backend == "openvino":
        hint = {"fp32": "f32", "bf16": "bf16"}[precision]  # OpenVINO picks bf16 by itself on such CPUs: always say
        config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"}
        return module.Core().compile_model(str(path), "CPU", config)
    return _session(path, threads)


@functools.cache
def _shared_arena() -> None:
    """Register one CPU memory arena for every ONNX Runtime session of the process (once).

    Each session's own arena keeps its largest run's memory: one image size's 21 per-shape sessions held
    3.3 GiB so, against 0.8 GiB sharing one, at the same speed (docs/performance.md).
    """
    import onnxruntime

    memory = onnxruntime.OrtMemoryInfo(
        "Cpu", onnxruntime.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, onnxruntime.OrtMemType.DEFAULT
    )
    onnxruntime.create_and_register_allocator(memory, onnxruntime.OrtArenaCfg(0, -1, -1, -1))


def _session(path: Path, threads: int, shape: tuple[int, ...] | None = None) -> Any:
    """An ONNX Runtime session of ``path`` on the process's shared arena: dynamic, or for input ``shape`` only."""
    import onnxruntime

    _shared_arena()
    options = onnxruntime.SessionOptions()
    options.add_session_config_entry("session.use_env_allocators", "1")
    # idle pool threads sleep instead of spinning against torch's threads: 1.3-1.4x faster on two (docs/performance.md)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    for name, size in zip(("n", "h", "w"), (shape[0], shape[2], shape[3]) if shape else ()):
        options.add_free_dimension_override_by_name(name, size)
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def static_session(key: _Key, after: int = STATIC_AFTER) -> Any:
    """The session of ``key``'s file for its input shape alone; ``None`` for the first ``after`` calls with
    ``key`` (run those on the dynamic session). At most :data:`STATIC_SESSIONS` are kept; one put out
    runs ``after`` times on the dynamic session again before it is made again (no thrashing)."""
    if key in _static:
        _static.move_to_end(key)
        return _static[key]
    _runs[key] = runs = _runs.pop(key, 0) + 1
    while len(_runs) > 16 * STATIC_SESSIONS:
        _runs.popitem(last=False)
    if runs <= after:
        return None
    del _runs[key]
    _static[key] = session = _session(*key)
    while len(_static) > STATIC_SESSIONS:
        _static.popitem(last=False)
    return session


class ExportedRunner:
    """``fcn`` normalized in torch, then its exported net on ``backend``; logits back as a torch tensor."""

    def __init__(self, fcn: FCN, backend: str, precision: str, threads: int) -> None:
        runtime(backend)  # refuse before exporting when the runtime is missing
        if not isinstance(fcn.net, torch.nn.Module):
            raise UsageError(f"--backend {backend} runs PyTorch nets; {fcn.name} is a {fcn.spec.framework} net")
        self.fcn, self.backend, self.path, self.threads = fcn, backend, onnx_file(fcn), threads
        self.model = _compiled(backend, self.path, precision, threads)
        self._request = self.model.create_infer_request() if backend == "openvino" else None
        #: ONNX Runtime: runs of an input shape on the dynamic session before it gets its own
        self.static_after = STATIC_AFTER

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        return self._run(pixels)[0]

    def with_cells(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits, class maps)`` of one inference (nets exported with class maps)."""
        logits, cells = self._run(pixels)
        return logits, cells

    def _run(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        x = np.ascontiguousarray(self.fcn.normalize(pixels).float().cpu().numpy())
        if self._request is not None:
            self._request.infer({0: x})
            count = len(self.model.outputs)
            return [torch.from_numpy(np.array(self._request.get_output_tensor(k).data)) for k in range(count)]
        session = static_session((self.path, self.threads, x.shape), self.static_after)
        return [torch.from_numpy(out) for out in (self.model if session is None else session).run(None, {"pixels": x})]


def build(fcn: FCN, backend: str, precision: str, threads: int | None) -> Runner:
    """An :class:`ExportedRunner` on ``threads`` threads (default: torch's intra-op thread count)."""
    return ExportedRunner(fcn, backend, precision, threads or torch.get_num_threads())
