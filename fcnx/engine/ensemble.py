"""The ensemble at run time: FCNs fed one resized batch per pyramid level and kernel.

Alignment is by geometry, never by stretching the image. Every net's pool ``D`` is taken at its
kernel ``K``, and ``K`` lies in ``[W_min(D), W_min(D) + stride - 1]``, so cell ``(i, j)`` of a net
is the classifier applied to the window ``[stride*i, stride*i + K) x [stride*j, stride*j + K)``
of its resized input. Nets sharing one kernel and stride see the same input and share these
windows; extra cells at the far edges (windows narrower than ``K`` that still fit) are cropped to
the cells all nets share, :func:`fcnx.method.geometry.common_cells`. In a *mixed* ensemble (nets
with other kernels or strides) the net with the finest grid is the reference: the others see the
original resized by ``K_n / K`` and their probabilities are resampled on its grid
(:mod:`fcnx.method.alignment`). Details: ``docs/crop.md``.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from fcnx.engine import backends
from fcnx.engine.backends.folding import fold_batchnorm
from fcnx.engine.devices import resolve_device
from fcnx.engine.fcn import FCN, load_fcn
from fcnx.errors import FcnxError, UsageError
from fcnx.method import alignment, geometry
from fcnx.method.geometry import DEFAULT_KERNEL

#: the one interpolation of the shared resize (antialiased when shrinking, clamped to [0, 255])
INTERPOLATION = "bicubic"
#: ``load_ensemble``'s kernel: one for all nets, ``"native"`` (each net at its trained or default size), or per net
KernelChoice = int | str | Mapping[str, int]


def resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``B x 3 x H x W`` pixels (any dtype, values in ``[0, 255]``) to float32 ``B x 3 x h x w``, channels-last.

    Bicubic with antialiasing (so shrinking a large photo does not alias), clamped to the pixel range.
    """
    x = images.float()
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=tuple(size), mode=INTERPOLATION, antialias=True, align_corners=False).clamp_(0, 255)
    return x.contiguous(memory_format=torch.channels_last)


@dataclass(frozen=True)
class NetCells:
    """One net's class maps at a level: ``logits`` ``B x classes x h' x w'`` (the first net's class order)
    of cells centred at ``stride * u + origin`` pixels of its input of ``size``
    (:class:`fcnx.method.evidence.ClassMap`)."""

    logits: torch.Tensor
    size: tuple[int, int]
    stride: int
    origin: float


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
    """FCNs with one class list (same names in another order are reordered).

    ``probabilities_at(pixels, size)`` resizes the pixels to ``size`` (to each net's own size in a
    mixed ensemble) and returns softmax probabilities ``B x nets x classes x h x w`` on the
    reference net's cell grid; ``probabilities(pixels)`` runs every net on the same batch (nets of
    one kernel and stride). ``reference`` is that net's index (default: the finest grid on the
    image, the least stride / kernel, the first of equals); ``kernel`` and ``stride`` are its own;
    ``align`` says how the other nets' cells are resampled on its grid (:mod:`fcnx.method.alignment`).
    Nets are switched to channels-last memory (faster convolutions on CPU and GPU); ``half`` runs them under float16 autocast
    (CUDA or MPS only); ``compile`` wraps each torch net in ``torch.compile`` with dynamic shapes
    (one compilation serves every pyramid level; the first images pay for it). ``fold`` folds each
    torch net's batch norms into its convolutions (:mod:`fcnx.engine.backends.folding`; the same
    function to float rounding, the FCN's ``classifier`` keeps them). ``backend`` and ``precision``
    choose what runs the nets (:mod:`fcnx.engine.backends`; default: torch in fp32;
    ``auto`` is resolved by :func:`~fcnx.engine.backends.resolve`, and :attr:`backend` is what runs them).
    """

    def __init__(
        self,
        fcns: Sequence[FCN],
        *,
        half: bool = False,
        compile: bool = False,
        fold: bool = True,
        backend: str = backends.DEFAULT_BACKEND,
        precision: str = backends.DEFAULT_PRECISION,
        align: str = "bilinear",
        reference: int | None = None,
    ) -> None:
        if not fcns:
            raise UsageError("an ensemble needs at least one net")
        if align not in alignment.MODES:
            raise UsageError(f"unknown alignment {align!r}; use one of {', '.join(alignment.MODES)}")
        given = list(fcns)
        #: the net whose grid the others are resampled on: ``reference`` (an index into ``fcns``), by default the
        #: finest grid on the image (least stride / kernel; the first of equals)
        self.reference = _reference(given, reference)
        self.kernel = given[self.reference].kernel
        self.stride = given[self.reference].spec.stride
        self.align = align
        #: whether some net has another kernel or stride than the reference
        self.mixed = any(f.kernel != self.kernel or f.spec.stride != self.stride for f in given)
        self.device = given[0].device
        if half and self.device.type not in ("cuda", "mps"):
            raise UsageError(f"half precision needs a CUDA or MPS device, not {self.device.type}", parameter="half")
        self.half = half
        self.classes = list(given[0].classes)
        self._orders = _class_order(given)
        self.names = _unique_names([f.name for f in given])
        #: prepared copies of the nets given (which are left as they are)
        self.fcns = [_prepared(fcn, fold, compile) for fcn in given]
        self.compiled = compile
        self.backend, self.precision = _backend(self.fcns, self.device, backend, precision, compile)
        #: what runs each net: pixels in [0, 255] -> logits (the FCN itself for torch)
        self.runners = [backends.runner(fcn, self.backend, self.precision) for fcn in self.fcns]
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

    def input_sizes(self, size: tuple[int, int]) -> list[tuple[int, int]]:
        """Per net, its input size at a level of reference size ``size`` (:func:`fcnx.method.alignment.net_side`)."""
        return [
            size if f.kernel == self.kernel else tuple(alignment.net_side(s, f.kernel, self.kernel) for s in size)  # type: ignore[misc]
            for f in self.fcns
        ]

    def exact_runners(self) -> list[backends.Runner]:
        """Runners of the same nets in fp32 (built on first use; the usual ones when the precision is fp32)."""
        if self.precision == "fp32":
            return self.runners
        if self._exact is None:
            self._exact = [backends.runner(fcn, self.backend, "fp32") for fcn in self.fcns]
        return self._exact

    def probabilities_at(self, pixels: torch.Tensor, size: tuple[int, int], exact: bool = False) -> torch.Tensor:
        """:meth:`probabilities_of` the pixels resized to each net's input size at the level of reference ``size``.

        One :func:`resize` from ``pixels`` per distinct size (for nets of one kernel: one in all).
        """
        return self.probabilities_of(self._inputs(pixels, size), size, exact)

    def _inputs(self, pixels: torch.Tensor, size: tuple[int, int]) -> dict[tuple[int, int], torch.Tensor]:
        """The pixels resized once to each distinct net input size of the level of reference ``size``."""
        return {shape: resize(pixels, shape) for shape in dict.fromkeys(self.input_sizes(size))}

    def probabilities(self, pixels: torch.Tensor, exact: bool = False) -> torch.Tensor:
        """:meth:`probabilities_of` one batch that every net sees (nets of one kernel and stride)."""
        if self.mixed:
            raise UsageError("the nets differ in kernel or stride: each needs its own input (probabilities_at)")
        size = tuple(pixels.shape[-2:])
        return self.probabilities_of({size: pixels}, size, exact)  # type: ignore[dict-item, arg-type]

    def probabilities_of(
        self, inputs: Mapping[tuple[int, int], torch.Tensor], size: tuple[int, int], exact: bool = False
    ) -> torch.Tensor:
        """Softmax probabilities ``B x nets x classes x rows x cols`` on the reference grid of a level of ``size``.

        ``inputs`` maps each net's :meth:`input_sizes` to its RGB pixels ``B x 3 x H x W`` in ``[0, 255]``.
        ``exact``: in fp32 whatever the ensemble's precision (the cropper's recheck of its best levels).
        Raises :class:`NonFiniteOutput` when a net's outputs for the batch are not all finite.
        """
        return self._forward(inputs, size, exact, False)[0]

    def outputs_at(self, pixels: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, list[NetCells | None]]:
        """:meth:`probabilities_at`, and from the same forward passes each net's class maps (``None`` for
        a net that gives none, :attr:`fcnx.engine.fcn.FCN.class_maps`)."""
        return self._forward(self._inputs(pixels, size), size, False, True)

    @torch.inference_mode()
    def _forward(
        self, inputs: Mapping[tuple[int, int], torch.Tensor], size: tuple[int, int], exact: bool, class_maps: bool
    ) -> tuple[torch.Tensor, list[NetCells | None]]:
        rows, cols = self.cells(size)
        if rows < 1 or cols < 1:
            raise ValueError(f"input {tuple(size)} is smaller than the kernel {self.kernel}")
        out: list[torch.Tensor] = []
        maps: list[NetCells | None] = []
        self._synchronize()
        start = time.perf_counter()
        runners = self.exact_runners() if exact else self.runners
        for fcn, run, order, shape in zip(self.fcns, runners, self._orders, self.input_sizes(size)):
            pixels = inputs[shape]
            stride = fcn.spec.stride
            cells = (
                geometry.common_cells(shape[0], fcn.kernel, stride),
                geometry.common_cells(shape[1], fcn.kernel, stride),
            )
            with_cells = class_maps and fcn.class_maps
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.half):
                logits, net_cells = run.with_cells(pixels) if with_cells else (run(pixels), None)  # type: ignore[attr-defined]
            if net_cells is not None:
                net_cells = net_cells.float() if order is None else net_cells.float().index_select(1, order)
            maps.append(None if net_cells is None else NetCells(net_cells, shape, stride, fcn.class_map_origin))
            if logits.shape[-2] < cells[0] or logits.shape[-1] < cells[1]:
                raise RuntimeError(
                    f"{fcn.name} returned a {tuple(logits.shape[-2:])} heatmap for input "
                    f"{tuple(pixels.shape[-2:])}; its formula {fcn.spec.formula()} promises at least "
                    f"{cells} cells (a wrong receptive-size formula in its plugin?)"
                )
            logits = logits[:, :, : cells[0], : cells[1]].float()
            if not bool(torch.isfinite(logits).all()):
                raise NonFiniteOutput(
                    f"{fcn.name} gives non-finite outputs (NaN or infinity): broken weights"
                    + (", or a float16 overflow" if self.half else "")
                )
            if order is not None:
                logits = logits.index_select(1, order)
            probs = logits.softmax(dim=1)
            if fcn.kernel != self.kernel or stride != self.stride:
                probs = self._resample(probs, (rows, cols), size, shape, fcn.kernel, stride)
            out.append(probs)
        self._synchronize()
        self.forward_seconds += time.perf_counter() - start
        return torch.stack(out, dim=1), maps

    def _resample(
        self,
        probs: torch.Tensor,
        cells: tuple[int, int],
        size: tuple[int, int],
        shape: tuple[int, int],
        kernel: int,
        stride: int,
    ) -> torch.Tensor:
        """A net's ``B x classes x m x n`` probabilities on the reference grid of ``cells`` (one axis at a time)."""
        for dim, count, side, source in ((2, cells[0], size[0], shape[0]), (3, cells[1], size[1], shape[1])):
            positions = alignment.source_positions(count, side, self.kernel, self.stride, source, kernel, stride)
            axis = alignment.axis_weights(positions, probs.shape[dim], self.align)
            low = probs.index_select(dim, torch.from_numpy(axis.low).to(self.device))
            if self.align == "nearest":
                probs = low
                continue
            high = probs.index_select(dim, torch.from_numpy(axis.high).to(self.device))
            weight = torch.from_numpy(axis.weight).to(self.device).view([-1] + [1] * (3 - dim))
            probs = low * (1 - weight) + high * weight
        return probs

    def _synchronize(self) -> None:
        if self.timed and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elif self.timed and self.device.type == "mps":
            torch.mps.synchronize()


def _backend(fcns: list[FCN], device: torch.device, backend: str, precision: str, compile: bool) -> tuple[str, str]:
    """What runs ``fcns`` and at which precision: ``backend``/``precision`` resolved for ``device``
    (:mod:`fcnx.engine.backends`)."""
    exportable = not compile and all(isinstance(f.net, torch.nn.Module) for f in fcns)
    backend = backends.resolve(backend, device.type, precision, exportable=exportable)
    precision = backends.check(backend, precision, device.type)
    if compile and backend != "torch":
        raise UsageError(f"--compile applies to --backend torch; --backend {backend} compiles the nets itself")
    return backend, precision


def _reference(fcns: list[FCN], reference: int | None) -> int:
    """The index of the reference net: ``reference``, else the finest grid on the image (least stride / kernel)."""
    if reference is None:
        return min(range(len(fcns)), key=lambda n: Fraction(fcns[n].spec.stride, fcns[n].kernel))
    if not 0 <= reference < len(fcns):
        raise UsageError(f"reference net {reference} is out of range: the ensemble has {len(fcns)} nets")
    return reference


def _prepared(fcn: FCN, fold: bool, compile: bool) -> FCN:
    """A copy of ``fcn`` whose torch net is ready to run: batch norms folded (``fold``), channels-last,
    compiled (``compile``); ``fcn`` itself is left unchanged. Other nets are shared as they are."""
    if not isinstance(fcn.net, torch.nn.Module):
        return fcn
    net = fold_batchnorm(fcn.net, _probe(fcn))[0] if fold else fcn.net
    if net is fcn.net:
        net = copy.deepcopy(net)
    net.to(memory_format=torch.channels_last)
    if compile:
        if backends.dynamic_padding(net):
            raise UsageError(
                f"--compile cannot compile {fcn.name} in bounded time (its TF-'same' padding, computed "
                f"from each input's size, stalls torch.compile); use --backend openvino instead"
            )
        return dataclasses.replace(fcn, net=torch.compile(net, dynamic=True))
    return dataclasses.replace(fcn, net=net)


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
    kernel: KernelChoice = DEFAULT_KERNEL,
    device: Any = "auto",
    half: bool = False,
    compile: bool = False,
    backend: str = backends.DEFAULT_BACKEND,
    precision: str = backends.DEFAULT_PRECISION,
) -> Ensemble:
    """Load ``nets`` (backbone names) on ``device`` into an :class:`Ensemble`.

    ``kernel``: the common kernel of every net; ``"native"``: each net at its own size (its
    checkpoint's input size, else the backbone's default size); or a mapping of net names to
    kernels (nets it leaves out: native). ``weights`` maps a backbone name to an fcnx checkpoint
    file (its classes are used) or to a pretrained tag (``"pretrained"`` or a hub tag); a net
    without an entry uses ``"pretrained"``. ``half``, ``compile``, ``backend`` and ``precision``:
    see :class:`Ensemble`.
    """
    weights = dict(weights or {})
    unknown = sorted(set(weights) - set(nets))
    if unknown:
        raise UsageError(
            f"weights given for {', '.join(unknown)}, which is not among the nets ({', '.join(nets)})",
            parameter="weights",
        )
    kernels = net_kernels(nets, kernel)
    dev = resolve_device(device) if isinstance(device, str) else device
    fcns = [load_fcn(name, weights.get(name, "pretrained"), kernel=k, device=dev) for name, k in zip(nets, kernels)]
    return Ensemble(fcns, half=half, compile=compile, backend=backend, precision=precision)


def net_kernels(nets: Sequence[str], kernel: KernelChoice) -> list[int | None]:
    """Per net, the kernel a :data:`KernelChoice` gives it (``None``: its native size)."""
    if isinstance(kernel, Mapping):
        unknown = sorted(set(kernel) - set(nets))
        if unknown:
            raise UsageError(
                f"a kernel given for {', '.join(unknown)}, which is not among the nets ({', '.join(nets)})"
            )
        bad = [name for name in nets if name in kernel and not _is_side(kernel[name])]
        if bad:
            raise UsageError(f"kernel {kernel[bad[0]]!r} for {bad[0]}: give a side in pixels (a whole number >= 1)")
        return [kernel.get(name) for name in nets]
    if kernel == "native":
        return [None] * len(nets)
    if not _is_side(kernel):
        raise UsageError(f"unknown kernel {kernel!r}: give a side in pixels or 'native'")
    return [kernel] * len(nets)  # type: ignore[list-item]


def _is_side(kernel: object) -> bool:
    """Whether ``kernel`` is a side in pixels: a whole number >= 1 (not a bool, a float or a string)."""
    return isinstance(kernel, int) and not isinstance(kernel, bool) and kernel >= 1
