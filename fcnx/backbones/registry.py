"""Backbone registry: every spec the plugins register, looked up by name or glob."""

from __future__ import annotations

import dataclasses
import fnmatch
import functools

from fcnx.backbones import plugins
from fcnx.backbones.spec import BackboneSpec
from fcnx.errors import UsageError, did_you_mean

_specs: dict[str, BackboneSpec] | None = None


def _collect() -> dict[str, BackboneSpec]:
    specs: dict[str, BackboneSpec] = {}

    def register(plugin: str, spec: BackboneSpec) -> None:
        if spec.name in specs:
            plugins.broken[plugin] = f"backbone {spec.name!r} already registered by {specs[spec.name].plugin}"
            return
        specs[spec.name] = dataclasses.replace(spec, plugin=plugin)

    plugins.call_each("register_backbones", lambda plugin: {"register": functools.partial(register, plugin)})
    return specs


def backbones() -> dict[str, BackboneSpec]:
    """All registered backbones by name (plugins are loaded on first use)."""
    global _specs
    if _specs is None:
        _specs = _collect()
    return _specs


def refresh() -> None:
    """Forget the collected specs, e.g. after registering a plugin by hand."""
    global _specs
    _specs = None


def list_backbones(pattern: str = "*") -> list[BackboneSpec]:
    """Registered backbones whose name matches the glob ``pattern`` (or any of a comma list), sorted."""
    patterns = [p.strip() for p in pattern.split(",") if p.strip()] or ["*"]
    return [spec for name, spec in sorted(backbones().items()) if any(fnmatch.fnmatch(name, p) for p in patterns)]


def get_backbone(name: str) -> BackboneSpec:
    """The backbone called ``name``; a :class:`UsageError` with close matches if there is none."""
    specs = backbones()
    if name not in specs:
        raise UsageError(f"unknown backbone {name!r}{did_you_mean(name, specs)}; see 'fcnx list-backbones'")
    return specs[name]
