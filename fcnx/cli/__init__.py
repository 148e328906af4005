"""The thin command line: parse options, call one job, print. ``fcnx.cli.app`` holds the group."""

from fcnx.cli.app import COMMANDS, cli, main

__all__ = ["COMMANDS", "cli", "main"]
