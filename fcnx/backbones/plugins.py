"""The one plugin manager: built-in and third-party plugins load the same way, by entry point.

``FCNX_LOAD_PLUGINS`` restricts loading to a comma-separated list of entry-point names
(empty: load none). A plugin that fails to import, or whose hook raises, is recorded in
:data:`broken` and skipped.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Callable
from typing import Any

import pluggy

from fcnx.backbones import hookspecs

ENTRY_POINT_GROUP = "fcnx"

pm = pluggy.PluginManager("fcnx")
pm.add_hookspecs(hookspecs)

#: plugin name -> one-line reason it could not be loaded or failed in a hook.
broken: dict[str, str] = {}

_loaded = False


def _allowed() -> set[str] | None:
    value = os.environ.get("FCNX_LOAD_PLUGINS")
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


def load_plugins() -> None:
    """Import and register every plugin of the ``fcnx`` entry-point group (once)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    allowed = _allowed()
    installed = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    for ep in installed:
        if allowed is not None and ep.name not in allowed:
            continue
        if pm.has_plugin(ep.name) or pm.is_blocked(ep.name):
            continue
        try:
            pm.register(ep.load(), name=ep.name)
        except Exception as exc:  # a broken plugin must never break the CLI
            broken[ep.name] = f"cannot load {ep.value}: {type(exc).__name__}: {exc}"
    names = sorted({ep.name for ep in installed})
    for name in sorted((allowed or set()) - set(names)):
        broken[name] = (
            f"FCNX_LOAD_PLUGINS names it, but no installed plugin is called so (installed: {', '.join(names)})"
        )


def plugin_name(plugin: object) -> str:
    """The name a registered plugin object is known by."""
    return pm.get_name(plugin) or repr(plugin)


def call_each(hook: str, kwargs_for: Callable[[str], dict[str, Any]]) -> list[str]:
    """Call ``hook`` through pluggy one plugin at a time, in registration order, with ``kwargs_for(plugin name)``.

    Returns the plugins it ran for. A plugin whose implementation raises is recorded in :data:`broken`
    and the others still run.
    """
    load_plugins()
    ran = []
    impls = getattr(pm.hook, hook).get_hookimpls()
    for impl in impls:
        others = [other.plugin for other in impls if other is not impl]
        try:
            pm.subset_hook_caller(hook, remove_plugins=others)(**kwargs_for(impl.plugin_name))
        except Exception as exc:  # one plugin's bug must not hide the others
            broken[impl.plugin_name] = f"{hook} failed: {type(exc).__name__}: {exc}"
            continue
        ran.append(impl.plugin_name)
    return ran
