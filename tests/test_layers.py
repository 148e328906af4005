"""The tree shows the architecture: each package imports only from the layers below it, and the pure
method and the file I/O never import a deep-learning framework (not even inside functions)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import fcnx

ROOT = Path(fcnx.__file__).parent
#: package (or top-level module) of fcnx -> its layer; imports go to strictly lower layers only
LAYERS = {
    "errors": 0,
    "version": 0,
    "method": 1,
    "io": 1,
    "backbones": 2,
    "plugin": 3,
    "testing": 3,
    "engine": 3,
    "render": 4,
    "jobs": 5,
    "training": 6,
    "review": 6,
    "bench": 6,
    "cli": 7,
    "__init__": 8,
    "__main__": 8,
}
FRAMEWORKS = ("torch", "torchvision", "timm", "tensorflow", "keras")


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module == "fcnx":
            names.update(f"fcnx.{alias.name}" for alias in node.names)  # from fcnx import __version__, errors
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def _package(path: Path) -> str:
    parts = path.relative_to(ROOT).parts
    return parts[0] if len(parts) > 1 else path.stem


def test_every_package_has_a_layer():
    assert {_package(p) for p in ROOT.rglob("*.py")} == set(LAYERS)


@pytest.mark.parametrize("path", sorted(ROOT.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_go_down_the_layers(path):
    own = _package(path)
    for name in _imports(path):
        if name == "fcnx" or name.startswith("fcnx."):
            target = name.split(".")[1] if "." in name else "__init__"
            if target != own:
                assert LAYERS[target] < LAYERS[own], f"{path.relative_to(ROOT)} imports {name} (layer {target})"


@pytest.mark.parametrize("package", ["method", "io"])
def test_method_and_io_never_import_a_framework(package):
    for path in (ROOT / package).rglob("*.py"):
        frameworks = {n for n in _imports(path) if n.split(".")[0] in FRAMEWORKS}
        assert not frameworks, f"{path.relative_to(ROOT)} imports {sorted(frameworks)}"


PLUGINS = ROOT.parent / "plugins"
#: the built-in plugins' own packages (a plugin may import its own modules, and the plugins it declares)
PLUGIN_PACKAGES = {"fcnx_timm", "fcnx_keras", "fcnx_efficientnet_lite", "fcnx_tiny"}


@pytest.mark.parametrize("path", sorted(PLUGINS.rglob("*.py")), ids=lambda p: str(p.relative_to(PLUGINS)))
def test_plugins_import_only_the_plugin_contract(path):
    """A plugin reaches fcnx through ``fcnx.plugin`` alone, as a third-party package would."""
    for name in _imports(path):
        if name == "fcnx" or name.startswith("fcnx."):
            assert name.startswith("fcnx.plugin"), f"plugins/{path.relative_to(PLUGINS)} imports {name}"


def test_the_core_imports_no_plugin():
    for path in ROOT.rglob("*.py"):
        plugins = {n for n in _imports(path) if n.split(".")[0] in PLUGIN_PACKAGES}
        assert not plugins, f"{path.relative_to(ROOT)} imports {sorted(plugins)}"
