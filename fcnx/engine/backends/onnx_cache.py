"""The FCN exported once to ONNX with dynamic batch, height and width, cached on disk.

The cache lives in ``$FCNX_CACHE`` (default ``~/.cache/fcnx``). A file's name carries a key of the
net's name, kernel and pool, the hash of the exported net's tensors (folded batch norms included)
and the fcnx, torch and ONNX-opset versions, so that other weights or versions never reuse it. A
JSON sidecar records the key and the file's own hash; a file that does not match its sidecar (a
partial copy, an edit) is exported again, never used. timm's TF-"same" padding exports with
dynamic sizes through the TorchScript exporter, which records its size arithmetic as graph
operations (``dynamo`` export stalls in symbolic shape reasoning on it). A net that gives class maps
(:attr:`fcnx.engine.fcn.FCN.class_maps`) is exported with them as a second output, ``cells``.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from fcnx.io.files import atomic_text, atomic_write, cache_dir
from fcnx.version import __version__

if TYPE_CHECKING:
    from fcnx.engine.fcn import FCN

OPSET = 17


def weights_hash(net: torch.nn.Module) -> str:
    """SHA-256 of every tensor of ``net``'s state (names, dtypes, shapes and bytes), in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(net.state_dict().items()):
        value = tensor.detach().cpu().reshape(-1)  # (flat: channels-last memory hashes as the same values)
        digest.update(f"{name}|{value.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(value.view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()


def outputs(fcn: FCN) -> list[str]:
    """The exported graph's outputs: ``logits``, and ``cells`` (the class maps) for nets that give them."""
    return ["logits", "cells"] if fcn.class_maps else ["logits"]


class _WithCells(torch.nn.Module):
    """The net's ``forward(x, cells=True)`` as a plain two-output forward, for the exporter."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> Any:
        return self.net(x, cells=True)


def _key(fcn: FCN) -> dict[str, str | int]:
    return {
        "net": fcn.name,
        "outputs": ",".join(outputs(fcn)),
        "kernel": fcn.kernel,
        "pool": fcn.pool,
        "weights_sha256": weights_hash(fcn.net),
        "fcnx": __version__,
        "torch": torch.__version__,
        "opset": OPSET,
    }


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fresh(path: Path, sidecar: Path, key: dict[str, str | int]) -> bool:
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return path.is_file() and meta.get("key") == key and meta.get("sha256") == _file_hash(path)


def onnx_file(fcn: FCN) -> Path:
    """The ONNX file of ``fcn``'s net (torch), exported now unless a fresh one is in the cache."""
    key = _key(fcn)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir() / "onnx" / f"{fcn.name}-k{fcn.kernel}-{digest}.onnx"
    sidecar = path.with_suffix(".json")
    if _fresh(path, sidecar, key):
        return path
    state = "stale, exporting it again" if path.exists() or sidecar.exists() else "exporting it once"
    print(f"fcnx: {fcn.name} is not in the cache ({state}: a few seconds per net) -> {path}", file=sys.stderr)
    start = time.perf_counter()
    probe = torch.zeros(1, 3, fcn.kernel, fcn.kernel, device=fcn.device)

    names = outputs(fcn)
    axes = {"pixels": {0: "n", 2: "h", 3: "w"}, "logits": {0: "n", 2: "rows", 3: "cols"}}
    axes |= {"cells": {0: "n", 2: "feature_rows", 3: "feature_cols"}} if "cells" in names else {}

    def export(f: Any) -> None:
        torch.onnx.export(
            _WithCells(fcn.net) if "cells" in names else fcn.net,
            (probe,),
            f,
            input_names=["pixels"],
            output_names=names,
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        atomic_write(path, export)
    atomic_text(sidecar, json.dumps({"key": key, "sha256": _file_hash(path)}, indent=1) + "\n")
    print(f"fcnx: exported {fcn.name} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return path
