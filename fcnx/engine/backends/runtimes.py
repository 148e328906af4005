"""Runners on CPU runtimes (OpenVINO, ONNX Runtime): the exported FCN, compiled once per process."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from fcnx.engine.backends import EXTRAS, Runner
from fcnx.engine.backends.export import onnx_file
from fcnx.errors import UsageError

if TYPE_CHECKING:
    from fcnx.engine.fcn import FCN


def _import(backend: str) -> Any:
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
    runtime = _import(backend)
    if backend == "openvino":
        hint = {"fp32": "f32", "bf16": "bf16"}[precision]  # OpenVINO picks bf16 by itself on such CPUs: always say
        config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"}
        return runtime.Core().compile_model(str(path), "CPU", config)
    options = runtime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    return runtime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class ExportedRunner:
    """``fcn`` normalized in torch, then its exported net on ``backend``; logits back as a torch tensor."""

    def __init__(self, fcn: FCN, backend: str, precision: str, threads: int) -> None:
        _import(backend)  # refuse before exporting when the runtime is missing
        if not isinstance(fcn.net, torch.nn.Module):
            raise UsageError(f"--backend {backend} runs PyTorch nets; {fcn.name} is a {fcn.spec.framework} net")
        self.fcn, self.backend = fcn, backend
        self.model = _compiled(backend, onnx_file(fcn), precision, threads)
        self._request = self.model.create_infer_request() if backend == "openvino" else None

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
        return [torch.from_numpy(out) for out in self.model.run(None, {"pixels": x})]


def build(fcn: FCN, backend: str, precision: str, threads: int | None) -> Runner:
    """An :class:`ExportedRunner` on ``threads`` threads (default: torch's intra-op thread count)."""
    return ExportedRunner(fcn, backend, precision, threads or torch.get_num_threads())
