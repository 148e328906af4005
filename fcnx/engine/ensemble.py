"""The ensemble at run time: FCNs sharing one kernel, fed one shared resized batch per pyramid level.

Alignment is by geometry, never by stretching the image. Every net's pool ``D`` is taken at the
common kernel ``K``, and ``K`` lies in ``[W_min(D), W_min(D) + stride - 1]`` for each of them,
so cell ``(i, j)`` of every net is the classifier applied to the same window
``[stride*i, stride*i + K) x [stride*j, stride*j + K)`` of the resized image. Nets whose formula
gives extra cells at the far edges (windows narrower than ``K`` that still fit) are cropped to
the cells all nets share, :func:`fcnx.method.geometry.common_cells`. Details: ``docs/crop.md``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from fcnx.engine import backends
from fcnx.engine.backends.folding import fold_batchnorm
from fcnx.engine.devices import resolve_device
from fcnx.engine.fcn import FCN, load_fcn
from fcnx.errors import FcnxError, UsageError
from fcnx.method import geometry

#: the one interpolation of the shared resize (antialiased when shrinking, clamped to [0, 255])
INTERPOLATION = "bicubic"
DEFAULT_KERNEL = 299


def resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``B x 3 x H x W`` pixels (any dtype, values in ``[0, 255]``) to float32 ``B x 3 x h x w``, channels-last.

    Bicubic with antialiasing (so shrinking a large photo does not alias), clamped to the pixel range.
    """
    x = images.float()
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=tuple(size), mode=INTERPOLATION, antialias=True, align_corners=False).clamp_(0, 255)
    return x.contiguous(memory_format=torch.channels_last)


class NonFiniteOutput(FcnxError):
    """A net gave NaN or infinite outputs: broken weights (a checkpoint of NaN), or a float16 overflow."""


def _class_order(fcns: Sequence[FCN]) -> list[torch.Tensor | None]:
    """Per net, the permutation putting its classes in the first net's order (None: already in order)."""
    reference = fcns[0].classes
    orders: list[torch.Tensor | None] = []
    for fcn in fcns:
        if fcn.classes == reference:
            orders.append(None)
            continue
        if sorted(fcn.classes) != sorted(reference) or len(set(fcn.classes)) != len(fcn.classes):
            missing = [c for c in reference if c not in fcn.classes][:3]
            extra = [c for c in fcn.classes if c not in reference][:3]
            detail = f"{len(fcn.classes)} classes vs {len(reference)}"
            if missing or extra:
                detail += f"; {fcns[0].name} has {missing} that {fcn.name} lacks" if missing else ""
                detail += f"; {fcn.name} has {extra} that {fcns[0].name} lacks" if extra else ""
            raise UsageError(
                f"the nets' class lists differ ({fcns[0].name} vs {fcn.name}: {detail}); "
                f"an ensemble needs nets trained on the same classes"
            )
        position = {name: k for k, name in enumerate(fcn.classes)}
        orders.append(torch.tensor([position[name] for name in reference], device=fcn.device))
    return orders


class Ensemble:
    """FCNs with one kernel, stride and class list (same names in another order are reordered).

    ``probabilities(pixels)`` runs every net on the same batch and returns softmax probabilities
    ``B x nets x classes x h x w`` on the common cell grid. Nets are switched to channels-last
    memory (faster convolutions on CPU and GPU); ``half`` runs them under float16 autocast
    (CUDA or MPS only); ``compile`` wraps each torch net in ``torch.compile`` with dynamic shapes
    (one compilation serves every pyramid level; the first images pay for it). ``fold`` folds each
    torch net's batch norms into its convolutions (:mod:`fcnx.engine.backends.folding`; the same
    function to float rounding, the FCN's ``classifier`` keeps them). ``backend`` and ``precision``
    choose what runs the nets (:mod:`fcnx.engine.backends`; default: :func:`~fcnx.engine.backends.current`).
    """

    def __init__(
        self,
        fcns: Sequence[FCN],
        *,
        half: bool = False,
        compile: bool = False,
        fold: bool = True,
        backend: str | None = None,
        precision: str | None = None,
    ) -> None:
        if not fcns:
            raise UsageError("an ensemble needs at least one net")
        self.fcns = list(fcns)
        self.kernel = self.fcns[0].kernel
        self.stride = self.fcns[0].spec.stride
        for fcn in self.fcns:
            if fcn.kernel != self.kernel:
                raise UsageError(
                    f"all nets need one kernel: {fcn.name} has {fcn.kernel}, {self.fcns[0].name} {self.kernel}"
                )
            if fcn.spec.stride != self.stride:
                raise UsageError(
                    f"all nets need one stride: {fcn.name} has {fcn.spec.stride}, {self.fcns[0].name} {self.stride}"
                )
        self.device = self.fcns[0].device
        if half and self.device.type not in ("cuda", "mps"):
            raise UsageError(f"half precision needs a CUDA or MPS device, not {self.device.type}", parameter="half")
        self.half = half
        self.classes = list(self.fcns[0].classes)
        self._orders = _class_order(self.fcns)
        self.names = _unique_names([f.name for f in self.fcns])
        for fcn in self.fcns:
            if isinstance(fcn.net, torch.nn.Module):
                if fold:
                    fcn.net, _ = fold_batchnorm(fcn.net, _probe(fcn))
                fcn.net.to(memory_format=torch.channels_last)
                if compile:
                    if backends.dynamic_padding(fcn.net):
                        raise UsageError(
                            f"--compile cannot compile {fcn.name} in bounded time (its TF-'same' padding, computed "
                            f"from each input's size, stalls torch.compile); use --backend openvino instead"
                        )
                    fcn.net = torch.compile(fcn.net, dynamic=True)
        self.compiled = compile
        backend, precision = backend or backends.current()[0], precision or backends.current()[1]
        self.precision = backends.check(backend, precision, self.device.type)
        if compile and backend != "torch":
            raise UsageError(f"--compile applies to --backend torch; --backend {backend} compiles the nets itself")
        self.backend = backend
        #: what runs each net: pixels in [0, 255] -> logits (the FCN itself for torch)
        self.runners = [backends.runner(fcn, backend, self.precision) for fcn in self.fcns]
        self._exact: list[backends.Runner] | None = None
        #: seconds spent in the nets' forward passes (on CUDA/MPS: kernel launch time unless ``timed``)
        self.forward_seconds = 0.0
        #: synchronise the device around forward passes, so that ``forward_seconds`` is exact on a GPU
        self.timed = False

    def __len__(self) -> int:
        return len(self.fcns)

    def cells(self, size: tuple[int, int]) -> tuple[int, int]:
        """The common cell grid ``(rows, cols)`` for an input of ``size`` ``(height, width)``."""
        return geometry.common_cells(size[0], self.kernel, self.stride), geometry.common_cells(
            size[1], self.kernel, self.stride
        )

    def exact_runners(self) -> list[backends.Runner]:
        """Runners of the same nets in fp32 (built on first use; the usual ones when the precision is fp32)."""
        if self.precision == "fp32":
            return self.runners
        if self._exact is None:
            self._exact = [backends.runner(fcn, self.backend, "fp32") for fcn in self.fcns]
        return self._exact

    @torch.inference_mode()
    def probabilities(self, pixels: torch.Tensor, exact: bool = False) -> torch.Tensor:
        """Softmax probabilities ``B x nets x classes x rows x cols`` of RGB pixels ``B x 3 x H x W`` in ``[0, 255]``.

        ``exact``: in fp32 whatever the ensemble's precision (the cropper's recheck of its best levels).
        Raises :class:`NonFiniteOutput` when a net's outputs for the batch are not all finite.
        """
        rows, cols = self.cells(tuple(pixels.shape[-2:]))
        if rows < 1 or cols < 1:
            raise ValueError(f"input {tuple(pixels.shape[-2:])} is smaller than the kernel {self.kernel}")
        out = []
        self._synchronize()
        start = time.perf_counter()
        for fcn, run, order in zip(self.fcns, self.exact_runners() if exact else self.runners, self._orders):
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.half):
                logits = run(pixels)
            if logits.shape[-2] < rows or logits.shape[-1] < cols:
                raise RuntimeError(
                    f"{fcn.name} returned a {tuple(logits.shape[-2:])} heatmap for input "
                    f"{tuple(pixels.shape[-2:])}; its formula {fcn.spec.formula()} promises at least "
                    f"{(rows, cols)} cells (a wrong receptive-size formula in its plugin?)"
                )
            logits = logits[:, :, :rows, :cols].float()
            if not bool(torch.isfinite(logits).all()):
                raise NonFiniteOutput(
                    f"{fcn.name} gives non-finite outputs (NaN or infinity): broken weights"
                    + (", or a float16 overflow" if self.half else "")
                )
            if order is not None:
                logits = logits.index_select(1, order)
            out.append(logits.softmax(dim=1))
        self._synchronize()
        self.forward_seconds += time.perf_counter() - start
        return torch.stack(out, dim=1)

    def _synchronize(self) -> None:
        if self.timed and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elif self.timed and self.device.type == "mps":
            torch.mps.synchronize()


def _probe(fcn: FCN) -> torch.Tensor:
    """One fixed random kernel-sized input, normalized for ``fcn``'s net."""
    pixels = torch.rand(1, 3, fcn.kernel, fcn.kernel, generator=torch.Generator().manual_seed(0)) * 255
    return fcn.normalize(pixels.to(fcn.device))


def _unique_names(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return unique


def load_ensemble(
    nets: Sequence[str],
    weights: Mapping[str, str | Path] | None = None,
    *,
    kernel: int = DEFAULT_KERNEL,
    device: Any = "auto",
    half: bool = False,
    compile: bool = False,
    backend: str | None = None,
    precision: str | None = None,
) -> Ensemble:
    """Load ``nets`` (backbone names) at the common ``kernel`` on ``device`` into an :class:`Ensemble`.

    ``weights`` maps a backbone name to an fcnx checkpoint file (its classes are used) or to a
    pretrained tag (``"pretrained"`` or a hub tag); a net without an entry uses ``"pretrained"``.
    ``half``, ``compile``, ``backend`` and ``precision``: see :class:`Ensemble`.
    """
    weights = dict(weights or {})
    unknown = sorted(set(weights) - set(nets))
    if unknown:
        raise UsageError(
            f"weights given for {', '.join(unknown)}, which is not among the nets ({', '.join(nets)})",
            parameter="weights",
        )
    dev = resolve_device(device) if isinstance(device, str) else device
    fcns = [load_fcn(name, weights.get(name, "pretrained"), kernel=kernel, device=dev) for name in nets]
    return Ensemble(fcns, half=half, compile=compile, backend=backend, precision=precision)
