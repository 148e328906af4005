"""The hooks a plugin implements. A plugin is any module or object with ``@hookimpl`` functions."""

from __future__ import annotations

from collections.abc import Callable

from pluggy import HookimplMarker, HookspecMarker

from fcnx.backbones.spec import BackboneSpec

hookspec = HookspecMarker("fcnx")
hookimpl = HookimplMarker("fcnx")


@hookspec
def register_backbones(register: Callable[[BackboneSpec], None]) -> None:
    """Register backbones by calling ``register(spec)`` once per :class:`~fcnx.backbones.spec.BackboneSpec`.

    Called once when the registry is first used. Implementations must be cheap: they declare
    specs and must not import a deep-learning framework (the spec's ``factory`` does that
    lazily, when the backbone is actually loaded).
    """
