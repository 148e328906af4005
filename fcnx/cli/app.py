"""The ``fcnx`` command line. Subcommands live in their own modules and are imported on use,
so ``fcnx --help`` and ``fcnx list-backbones`` never import a deep-learning framework."""

from __future__ import annotations

import importlib
import os
from typing import Any

import click

from fcnx.errors import FcnxError, one_line
from fcnx.version import __version__

#: command name -> ("module:attribute", short help shown by ``fcnx --help``)
COMMANDS: dict[str, tuple[str, str]] = {
    "list-backbones": ("fcnx.cli.backbones:list_backbones_cmd", "List the registered backbones."),
    "info": ("fcnx.cli.backbones:info_cmd", "Show one backbone's spec and its W <-> D table."),
    "crop": ("fcnx.cli.crop:crop_cmd", "Find a category with an FCN ensemble and crop images there."),
    "train": ("fcnx.cli.train:train_cmd", "Fine-tune a backbone on a dataset (transfer learning)."),
    "evaluate": ("fcnx.cli.evaluate:evaluate_cmd", "Top-1/top-5 of classifiers on original vs cropped images."),
    "suspects": ("fcnx.cli.suspects:suspects_cmd", "List images whose label no net finds (likely mislabelled)."),
    "review": ("fcnx.cli.review:review_cmd", "Review a crop or suspects run in the browser; decisions kept."),
    "export": ("fcnx.cli.export:export_cmd", "Boxes as COCO, Pascal VOC, YOLO or FiftyOne files."),
    "apply": ("fcnx.cli.apply:apply_cmd", "Write the cleaned dataset of a crop run and its review decisions."),
    "import-labelstudio": (
        "fcnx.cli.apply:import_labelstudio_cmd",
        "Append a Label Studio JSON export's annotations to review.jsonl.",
    ),
    "bench": ("fcnx.cli.bench:bench_cmd", "Benchmarks with ground truth: localization, accuracy, mislabels."),
}


class UserFacingError(click.ClickException):
    """An :class:`FcnxError` on its way to the terminal: ``Error: <message>`` and its exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        # click types exit_code as a ClassVar, yet reads it from the instance (main, standalone mode)
        self.exit_code = exit_code  # type: ignore[misc]


def plugin_commands() -> dict[str, click.Command]:
    """The commands plugins add through the ``register_commands`` hook (a built-in name is never taken)."""
    from fcnx.backbones import plugins

    group = click.Group()
    plugins.call_each("register_commands", lambda plugin: {"cli": group})
    return {name: cmd for name, cmd in group.commands.items() if name not in COMMANDS}


class LazyGroup(click.Group):
    """A click group whose built-in subcommands are imported only when invoked (or their full help is asked),
    plus the commands plugins register."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*COMMANDS, *plugin_commands()])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return plugin_commands().get(name)
        module, attr = COMMANDS[name][0].split(":")
        command: click.Command = getattr(importlib.import_module(module), attr)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FcnxError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            option = f"--{exc.parameter.replace('_', '-')}: " if exc.parameter else ""
            raise UserFacingError(one_line(f"{option}{exc}"), exc.exit_code) from None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        extra = plugin_commands()
        rows = [
            (name, COMMANDS[name][1] if name in COMMANDS else extra[name].get_short_help_str(80))
            for name in sorted([*COMMANDS, *extra])
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="fcnx")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Turn image classifiers into fully convolutional networks and crop images where an
    ensemble of them finds a category.

    \b
    Examples:
      fcnx list-backbones
      fcnx info inception_v3
      fcnx crop --nets inception_v3,xception --weights inception_v3=iv3.safetensors \\
                --weights xception=xc.safetensors --category pizza photos/ -o crops/
    """
    ctx.obj = {"debug": debug or bool(os.environ.get("FCNX_DEBUG"))}


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="fcnx")
