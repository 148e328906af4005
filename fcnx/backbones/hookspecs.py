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


@hookspec(firstresult=True)
def resolve_backbone(name: str) -> BackboneSpec | None:
    """The spec of a backbone ``name`` that no plugin registered, e.g. ``timm/<model_name>``; else ``None``.

    Called only for names :func:`register_backbones` did not declare, when one is used, so it may
    import its framework and measure the backbone. A name the plugin owns but cannot serve raises
    :class:`~fcnx.errors.UsageError` with one line saying why.
    """
