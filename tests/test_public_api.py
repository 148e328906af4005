"""The public face: ``from fcnx import ...`` for the library, ``fcnx.plugin`` for plugin authors."""

from __future__ import annotations

import subprocess
import sys

import fcnx
import fcnx.plugin


def test_every_public_name_resolves_to_its_definition():
    assert set(fcnx.__all__) == {"__version__", *fcnx._EXPORTS}
    for name in fcnx.__all__:
        value = getattr(fcnx, name)
        if name != "__version__":
            assert value.__name__ == name and value.__module__.startswith("fcnx."), name
    for name in fcnx.plugin.__all__:
        assert getattr(fcnx.plugin, name) is not None, name


def test_the_imports_for_type_checkers_are_the_public_names():
    """``fcnx/__init__.py`` lists its names once (``_EXPORTS``); the ``TYPE_CHECKING`` imports must say the same."""
    import ast
    from pathlib import Path

    tree = ast.parse(Path(fcnx.__file__).read_text(encoding="utf-8"))
    block = next(node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING")
    imported = {
        alias.name: node.module for node in block.body if isinstance(node, ast.ImportFrom) for alias in node.names
    }
    assert imported == fcnx._EXPORTS


def test_importing_fcnx_and_fcnx_plugin_does_not_import_torch():
    code = "import sys, fcnx, fcnx.plugin; from fcnx import BackboneSpec; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_unknown_names_raise_attribute_error():
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        fcnx.Nope  # noqa: B018
    with pytest.raises(AttributeError):
        fcnx.plugin.Nope  # noqa: B018
