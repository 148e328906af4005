"""The hooks a plugin implements. A plugin is any module or object with ``@hookimpl`` functions.

Both hooks are called through pluggy, one plugin at a time (:func:`fcnx.backbones.plugins.call_each`), so
a plugin that raises is reported in ``fcnx list-backbones`` and skipped without hiding the others.
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
