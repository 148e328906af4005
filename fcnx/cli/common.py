"""Options shared by the commands that run an ensemble: --nets, --weights, --kernel, --device."""

from __future__ import annotations

import functools
import math
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from fcnx.errors import UsageError
from fcnx.method import geometry

if TYPE_CHECKING:
    from fcnx.jobs.workers import Plan

#: the ensemble used when neither --nets nor --weights is given: real ImageNet weights that ship with fcnx
DEFAULT_NETS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
#: their common kernel, chosen by measurement (docs/efficientnet.md)
DEFAULT_NETS_KERNEL = 224


class FiniteFloatRange(click.FloatRange):
    """``click.FloatRange`` that also refuses ``nan`` and infinities (NaN passes every range comparison)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


class PathType(click.Path):
    """``click.Path`` that refuses an empty name: ``Path("")`` is ``.``, so ``-o ""`` (an unset shell variable)
    would write into the current folder and an empty INPUT would take in everything under it."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, (str, bytes)) and not value:
            self.fail("an empty name is no file or folder (an unset shell variable?).", param, ctx)
        return super().convert(value, param, ctx)


#: --step: the factor between pyramid levels
STEP = FiniteFloatRange(min=1.0, min_open=True)
#: --max-scale: the largest pyramid level relative to the first
MAX_SCALE = FiniteFloatRange(min=1.0)


class MaxScaleType(click.ParamType):
    """``--max-scale`` of ``fcnx crop``: a number >= 1 (:data:`MAX_SCALE`) or ``auto``."""

    name = "FLOAT|auto"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and value.strip().lower() == geometry.AUTO:
            return geometry.AUTO
        return MAX_SCALE.convert(value, param, ctx)


class KernelType(click.ParamType):
    """--kernel: a side in pixels (>= 1), or ``native`` (each net at its own trained or default size)."""

    name = "N|native"

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str:
        return self.name  # as typed: click would show N|NATIVE

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int) or value == "native":
            return value
        text = str(value).strip()
        if text.lower() == "native":
            return "native"
        if text.isascii() and text.isdigit():
            try:
                side = int(text)
            except ValueError:  # over Python's 4300 digits
                self.fail(f"{text[:12]}... ({len(text)} digits) is too large a side in pixels.", param, ctx)
            if side >= 1:
                return side
        self.fail(f"{value!r} is neither a side in pixels (>= 1) nor 'native'.", param, ctx)


class CategoryType(click.ParamType):
    """A category as given: a class name, or an index written in ASCII digits (``"٣"`` and ``"²"`` are names)."""

    name = "NAME|INDEX"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        text = str(value)
        if not text.strip():
            self.fail("a category must not be empty.", param, ctx)
        if not text.isprintable():
            self.fail(f"{text!r} holds control characters.", param, ctx)
        return text


#: what a command stopped by a signal says by default
RESUME = "run the same command again to resume"


class Interrupted(KeyboardInterrupt):
    """Raised by a command that was stopped, to say how to go on (``advice``) instead of :data:`RESUME`."""

    def __init__(self, advice: str) -> None:
        super().__init__(advice)
        self.advice = advice


def stoppable(name: str, advice: str = RESUME) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Make a command stop cleanly on Ctrl-C and ``SIGTERM`` (:func:`fcnx.io.processes.stop_on_signals`).

    The signal becomes an interrupt in the command (which finishes what it is writing; a second
    signal is ignored meanwhile); one line ``NAME: interrupted; ADVICE`` (``stopped by SIGTERM``)
    and exit status 130 (143). A command may raise :class:`Interrupted` to give other advice, or
    exit itself (``SystemExit``), as ``crop`` does after writing its tables.
    """

    def wrap(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def run(*args: Any, **kwargs: Any) -> Any:
            from fcnx.errors import one_line
            from fcnx.io.processes import stop_on_signals

            with stop_on_signals() as stop:
                try:
                    return command(*args, **kwargs)
                except KeyboardInterrupt as exc:
                    how = "interrupted" if stop.signal in (None, signal.SIGINT) else f"stopped by {stop.signal.name}"
                    line = exc.advice if isinstance(exc, Interrupted) else advice
                    click.echo(one_line(f"{name}: {how}; {line}"), err=True)
                    raise SystemExit(stop.exit_code) from None

        return run

    return wrap


def _parse_nets(text: str) -> list[str]:
    nets = [n.strip() for n in text.split(",") if n.strip()]
    if not nets:
        raise UsageError("--nets needs at least one backbone name, e.g. --nets inception_v3,xception")
    twice = next((net for k, net in enumerate(nets) if net in nets[:k]), None)
    if twice is not None:
        raise UsageError(f"--nets names {twice} twice: each net is one member of the ensemble")
    return nets


def parse_weights(pairs: tuple[str, ...]) -> dict[str, str]:
    weights: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise UsageError(f"--weights expects NET=FILE or NET=pretrained, got {pair!r}")
        if name.strip() in weights:
            raise UsageError(f"--weights given twice for {name.strip()}")
        weights[name.strip()] = value.strip()
    return weights


def resolve_nets(
    nets: str | None, weights: tuple[str, ...], kernel: int | str | None
) -> tuple[list[str], dict[str, str], int | str]:
    """Net names, their weights and the common kernel from the options (defaults documented on the options)."""
    weight_map = parse_weights(weights)
    if nets is not None:
        names = _parse_nets(nets)
    elif weight_map:
        names = list(weight_map)
    else:
        names = list(DEFAULT_NETS)
        kernel = kernel or DEFAULT_NETS_KERNEL
    extra = sorted(set(weight_map) - set(names))
    if extra:
        raise UsageError(f"--weights given for {', '.join(extra)}, which --nets does not name")
    if kernel is None:
        from fcnx.engine.fcn import trained_size

        sizes = {trained_size(name, weight_map.get(name, "pretrained")) for name in names}
        kernel = sizes.pop() if len(sizes) == 1 and None not in sizes else None
    return names, weight_map, kernel or geometry.DEFAULT_KERNEL


def _with_ensemble_file(command: Callable[..., Any]) -> Callable[..., Any]:
    """``command`` with an ``--ensemble FILE`` option that stands for its --nets, --weights and --kernel."""

    @functools.wraps(command)
    def run(*args: Any, ensemble: Path | None = None, **kwargs: Any) -> Any:
        if ensemble is not None:
            from fcnx.training.manifest import ensemble_weights

            if kwargs.get("nets") is not None or kwargs.get("weights"):
                raise UsageError("--ensemble gives the nets and their weights: leave out --nets and --weights")
            names, files, kernel = ensemble_weights(ensemble)
            kwargs["nets"] = ",".join(names)
            kwargs["weights"] = tuple(f"{name}={files[name]}" for name in names)
            kwargs["kernel"] = kwargs.get("kernel") or kernel
        return command(*args, **kwargs)

    return click.option(
        "--ensemble",
        type=PathType(path_type=Path, exists=True),
        help="An ensemble trained by 'fcnx train --nets' (its ensemble.json, or the folder): its nets, "
        "checkpoints and kernel, instead of --nets and --weights.",
    )(run)


def ensemble_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add --nets, --weights, --kernel, --device, --ensemble, --backend and --precision to a click command (the last
    two given to it as ``backend`` and ``precision``, for its job's options)."""
    command = _with_ensemble_file(command)
    options = [
        click.option(
            "--nets",
            default=None,
            help="Comma-separated backbones of the ensemble, e.g. inception_v3,xception. Default: the nets "
            "named by --weights, else the offline ImageNet ensemble "
            + ",".join(DEFAULT_NETS)
            + f" at kernel {DEFAULT_NETS_KERNEL}.",
        ),
        click.option(
            "--weights",
            "weights",
            multiple=True,
            metavar="NET=FILE",
            help="Weights of one net: an fcnx checkpoint (its classes are used) or 'pretrained'/a hub tag. Repeatable.",
        ),
        click.option(
            "--kernel",
            default=None,
            type=KernelType(),
            help=f"Common kernel: every net is convolutionalized for this input side [default: the size all "
            f"the nets' checkpoints were trained at, else {geometry.DEFAULT_KERNEL}; {DEFAULT_NETS_KERNEL} for "
            f"the default ensemble]. native: each net at its own size (its checkpoint's, else its "
            f"backbone's default), resampled on the grid of the net with the finest one.",
        ),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps."),
        *backend_options(),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def backend_options() -> list[Callable[..., Any]]:
    """--backend and --precision: what runs the nets (fcnx.engine.backends, docs/performance.md)."""
    from fcnx.engine.backends import CHOICES, PRECISIONS

    return [
        click.option(
            "--backend",
            default="auto",
            show_default=True,
            envvar="FCNX_BACKEND",
            show_envvar=True,
            type=click.Choice(CHOICES),
            help="What runs the nets: auto (on the CPU the fastest exact runtime installed: onnxruntime, "
            "else openvino, else torch; torch on a GPU), torch (the reference), or on the CPU the net "
            "exported once to ONNX (cached in $FCNX_CACHE, else ~/.cache/fcnx) and run by ONNX Runtime or "
            "OpenVINO (pip install 'fcnx[openvino]'). All give torch's boxes in fp32.",
        ),
        click.option(
            "--precision",
            default="fp32",
            show_default=True,
            type=click.Choice(PRECISIONS),
            help="bf16: --backend openvino on a CPU with native bf16 (AVX-512 BF16 or AMX), else fp32.",
        ),
    ]


def is_local_engine(engine: str, address: str | None, actors: int | None) -> bool:
    """Whether the options ask for the local engine; refuses Ray-only options without Ray, and Ray when not installed."""
    if engine == "local":
        if address is not None or actors is not None:
            raise UsageError("--address and --actors apply to --engine ray")
        return True
    from fcnx.jobs.ray import import_ray

    import_ray()  # refuse early when Ray is not installed
    return False


class JobsType(click.ParamType):
    """``--jobs``: a number of processes (>= 1), or ``auto`` (``None``)."""

    name = "N|auto"

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str:
        return self.name

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
            return None
        return click.IntRange(min=1).convert(value, param, ctx)


def jobs_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add --jobs N|auto (processes running the nets on this machine) to a click command."""
    return click.option(
        "--jobs",
        default="auto",
        show_default=True,
        envvar="FCNX_JOBS",
        show_envvar=True,
        type=JobsType(),
        help="Processes running the nets on this machine, the outputs the same bytes: auto (on a CPU one "
        "single-thread process per core, as memory allows; one per GPU), or N (the cores split among "
        "them; 1: this process alone, on all its threads).",
    )(command)


def processes(plan: Plan) -> str:
    """``2 processes x 1 thread``: the worker processes of ``--jobs``."""
    return f"{plan.jobs} processes x {plan.threads} thread{'s' * (plan.threads > 1)}"


def announce(command: str, warnings: list[str], pending: int, total: int, plan: Plan) -> None:
    """The start of a journaled run on stderr: its warnings, what is left to do, the worker processes."""
    from fcnx.errors import one_line

    for warning in warnings:
        click.echo(f"{command}: warning: {one_line(warning)}", err=True)
    if pending < total:
        click.echo(f"{command}: {pending} image(s) to do, {total - pending} already done", err=True)
    if plan.jobs > 1:
        click.echo(f"{command}: {processes(plan)}", err=True)


def engine_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add --engine, --address and --actors (where the nets run) to a click command."""
    options = [
        click.option(
            "--engine",
            default="local",
            show_default=True,
            type=click.Choice(["local", "ray"]),
            help="local: this machine; ray: a Ray cluster (pip install 'fcnx[ray]'), same outputs.",
        ),
        click.option(
            "--address",
            default=None,
            metavar="ADDR",
            help="--engine ray: the cluster to join (e.g. auto, ray://head:10001) [default: RAY_ADDRESS, "
            "else a new local cluster].",
        ),
        click.option(
            "--actors",
            default=None,
            type=click.IntRange(min=1),
            help="--engine ray: actors running the nets [default: one per GPU, else one per CPU].",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command
