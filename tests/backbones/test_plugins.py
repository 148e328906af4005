"""Plugins: inline registration, broken plugins reported and skipped, FCNX_LOAD_PLUGINS."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from click.testing import CliRunner

from fcnx.backbones import plugins, registry
from fcnx.backbones.hookspecs import hookimpl
from fcnx.backbones.spec import BackboneSpec
from fcnx.cli import cli
from fcnx.errors import UsageError


def _unused(*args, **kwargs):
    raise AssertionError("a spec's callables must not run while listing")


def tiny_spec(name: str, stride: int = 8, offset: int = 5) -> BackboneSpec:
    return BackboneSpec(
        name=name,
        framework="pytorch",
        stride=stride,
        offset=offset,
        default_size=stride * 4 + offset,
        build=_unused,
        load_weights=_unused,
        convolutionalize=_unused,
        description="inline test net",
    )


class InlinePlugin:
    @hookimpl
    def register_backbones(self, register):
        register(tiny_spec("inline_net"))


class RaisingPlugin:
    @hookimpl
    def register_backbones(self, register):
        raise RuntimeError("boom")


def test_inline_plugin_registers_a_backbone(clean_registry):
    clean_registry.register(InlinePlugin(), name="inline")
    registry.refresh()
    spec = registry.get_backbone("inline_net")
    assert spec.plugin == "inline"
    assert spec.formula() == "8D+5"
    result = CliRunner().invoke(cli, ["list-backbones", "inline*"])
    assert result.exit_code == 0, result.output
    assert "inline_net" in result.output and "8D+5" in result.output and "vgg16" not in result.output


def test_hook_that_raises_is_reported_and_skipped(clean_registry):
    clean_registry.register(RaisingPlugin(), name="raising")
    clean_registry.register(InlinePlugin(), name="inline")
    registry.refresh()
    result = CliRunner().invoke(cli, ["list-backbones"])
    assert result.exit_code == 0
    assert "inline_net" in result.stdout and "inception_v3" in result.stdout
    assert "warning: plugin 'raising' skipped: register_backbones failed: RuntimeError: boom" in result.stderr


def test_duplicate_backbone_name_is_reported(clean_registry):
    class Again:
        @hookimpl
        def register_backbones(self, register):
            register(tiny_spec("vgg16"))

    clean_registry.register(Again(), name="again")
    registry.refresh()
    assert registry.get_backbone("vgg16").plugin == "timm"
    assert "already registered by timm" in plugins.broken["again"]


def test_plugin_that_fails_to_import_is_reported(monkeypatch, clean_registry):
    class BrokenEntryPoint:
        name = "broken_pkg"
        value = "broken_pkg.module"

        def load(self):
            raise ImportError("No module named 'broken_pkg'")

    monkeypatch.setattr(plugins, "_loaded", False)
    monkeypatch.setattr(plugins.importlib.metadata, "entry_points", lambda group: [BrokenEntryPoint()])
    plugins.load_plugins()
    registry.refresh()
    result = CliRunner().invoke(cli, ["list-backbones"])
    assert result.exit_code == 0
    assert "plugin 'broken_pkg' skipped: cannot load broken_pkg.module: ImportError" in result.stderr


def test_unknown_backbone_suggests_close_matches(clean_registry):
    with pytest.raises(UsageError, match=r"unknown backbone 'incepton_v3' \(did you mean: inception_v3"):
        registry.get_backbone("incepton_v3")


def test_list_backbones_glob_and_comma_list():
    names = [s.name for s in registry.list_backbones("vgg*,xception")]
    assert names == ["vgg16", "vgg19", "xception"]


def _run_list(env_value: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "FCNX_LOAD_PLUGINS"}
    if env_value is not None:
        env["FCNX_LOAD_PLUGINS"] = env_value
    out = subprocess.run(
        [sys.executable, "-m", "fcnx", "list-backbones", "--json"], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def test_env_var_restricts_loaded_plugins():
    assert _run_list("") == {"backbones": [], "broken_plugins": {}}
    timm_only = _run_list("timm")
    assert {b["plugin"] for b in timm_only["backbones"]} == {"timm"}
    assert "inception_v3" in {b["name"] for b in timm_only["backbones"]}
    typo = _run_list("timm,tim")
    assert {b["plugin"] for b in typo["backbones"]} == {"timm"}
    assert typo["broken_plugins"]["tim"].startswith("FCNX_LOAD_PLUGINS names it, but no installed plugin is called so")
    assert "timm" in typo["broken_plugins"]["tim"]


def test_a_plugin_adds_a_command_through_register_commands(clean_registry):
    import click

    class CommandPlugin:
        @hookimpl
        def register_commands(self, cli):
            @cli.command(short_help="Say hello from a plugin.")
            @click.argument("name")
            def hello(name):
                click.echo(f"hello {name}")

            @cli.command("crop")  # a built-in name is never taken
            def not_crop():
                click.echo("hijacked")

    clean_registry.register(CommandPlugin(), name="hello-plugin")
    runner = CliRunner()
    assert runner.invoke(cli, ["hello", "fcnx"]).output == "hello fcnx\n"
    listing = runner.invoke(cli, ["--help"]).output
    assert re.search(r"\n  hello +Say hello from a plugin\.\n", listing)
    assert "hijacked" not in runner.invoke(cli, ["crop", "--help"]).output


def test_a_plugin_whose_register_commands_raises_is_skipped(clean_registry):
    class Broken:
        @hookimpl
        def register_commands(self, cli):
            raise RuntimeError("no commands today")

    clean_registry.register(Broken(), name="broken-commands")
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0 and "convert" in result.output
    assert plugins.broken["broken-commands"] == "register_commands failed: RuntimeError: no commands today"


class ResolvingPlugin:
    """Serves any ``mine/<stride>`` on demand, as the timm plugin serves ``timm/<model>``."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    @hookimpl
    def resolve_backbone(self, name):
        if not name.startswith("mine/"):
            return None
        self.calls.append(name)
        return tiny_spec(name, stride=int(name.split("/")[1]))


def test_a_plugin_resolves_names_it_did_not_register(clean_registry):
    plugin = ResolvingPlugin()
    clean_registry.register(plugin, name="resolver")
    registry.refresh()
    spec = registry.get_backbone("mine/16")
    assert (spec.name, spec.plugin, spec.formula()) == ("mine/16", "resolver", "16D+5")
    assert registry.get_backbone("mine/16") is spec and plugin.calls == ["mine/16"]  # resolved once
    assert "mine/16" not in [s.name for s in registry.list_backbones()]  # listed only by its plugin's own means
    with pytest.raises(UsageError, match="unknown backbone 'yours/16'"):
        registry.get_backbone("yours/16")
