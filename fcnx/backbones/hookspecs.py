"""The hooks a plugin implements. A plugin is any module or object with ``@hookimpl`` functions.

``register_backbones`` and ``register_commands`` are called through pluggy one plugin at a time
(:func:`fcnx.backbones.plugins.call_each`), so a plugin that raises is reported in ``fcnx list-backbones``
and skipped without hiding the others; ``resolve_backbone`` is asked plugin by plugin until one answers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pluggy import HookimplMarker, HookspecMarker

from fcnx.backbones.spec import BackboneSpec

hookspec = HookspecMarker("fcnx")
hookimpl = HookimplMarker("fcnx")


@hookspec
def register_backbones(register: Callable[[BackboneSpec], None]) -> None:
    """Declare the backbones this plugin offers.

    Called once per process, when the registry is first used (``fcnx list-backbones``, ``--nets``,
    :func:`fcnx.get_backbone`), and again after :func:`fcnx.backbones.registry.refresh`.

    :param register: call it once per :class:`~fcnx.backbones.spec.BackboneSpec`. A name another
        plugin registered first is refused (reported as a broken plugin), the first one stays.

    Implementations must be cheap: they declare specs and must not import a deep-learning framework
    (the spec's ``build``, ``load_weights`` and ``convolutionalize`` do that when the backbone is used).
    The return value is ignored.
    """


@hookspec
def register_commands(cli: Any) -> None:
    """Add commands to the ``fcnx`` command line.

    Called whenever the command line lists or looks up its commands (``fcnx --help``, ``fcnx NAME``),
    with a fresh group each time, so commands registered inline (tests, notebooks) appear at once.

    :param cli: a :class:`click.Group`; add commands with ``@cli.command()`` or ``cli.add_command(cmd)``.
        A built-in command's name cannot be taken: such a command is ignored.

    Implementations must be cheap: import what the command needs inside the command's function.
    The return value is ignored.
    """


@hookspec(firstresult=True)
def resolve_backbone(name: str) -> BackboneSpec | None:
    """The spec of a backbone ``name`` that no plugin registered, e.g. ``timm/<model_name>``; else ``None``.

    Called only for names :func:`register_backbones` did not declare, when one is used, so it may
    import its framework and measure the backbone. A name the plugin owns but cannot serve raises
    :class:`~fcnx.errors.UsageError` with one line saying why.

    :param name: the backbone name as given (``--nets``, :func:`fcnx.get_backbone`).

    ``firstresult``: the first plugin to return a spec serves the name; ``None`` lets the next one try.
    """


@hookspec(firstresult=True)
def list_candidates(family: str, pattern: str) -> list[dict[str, Any]] | None:
    """The backbones of ``family`` matching ``pattern`` that this plugin can resolve on demand but does not register.

    Called by ``fcnx list-backbones --all-FAMILY PATTERN`` (today ``--all-timm``), when that option is given.

    :param family: which catalogue is asked for (``"timm"``); a plugin that does not own it returns ``None``.
    :param pattern: a glob over the catalogue's names, as the user typed it.

    Returns one row per candidate: ``name`` (as ``--nets`` takes it), ``formula`` (text or ``None`` when not
    measured yet), ``default_size``, ``pretrained`` (weight tags) and ``status``. A plugin that owns the family
    but lacks its framework raises :class:`~fcnx.errors.UsageError` with the install hint.
    ``firstresult``: the first plugin to return a list answers.
    """
