"""``fcnx train``'s settings are declared once, in :class:`~fcnx.training.config.TrainConfig`: each one is an
option of the command with the setting's default, and the command has no other option but how it runs."""

from __future__ import annotations

from dataclasses import fields

from fcnx.cli.train import CLI_DEFAULTS, CONFIG_OPTIONS, _parse_head, train_cmd
from fcnx.training.config import TrainConfig, default

#: the options that say how a run goes, not what it trains (never saved with it)
RUN_OPTIONS = {"nets", "outdir", "device", "workers", "resume", "quiet"}


def test_every_setting_is_one_option_with_the_settings_default():
    settings = {f.name for f in fields(TrainConfig)} - {"fold"}  # the fold: set by --folds for each fold model
    params = {p.name: p for p in train_cmd.params}
    assert set(CONFIG_OPTIONS) == settings
    assert set(params) == settings | RUN_OPTIONS
    for name in settings - set(CLI_DEFAULTS):
        assert params[name].default == default(name), name
    assert _parse_head(params["head"].default) == default("head") == []
    assert params["folds"].default is None and default("folds") == 0  # no folds, either way


def test_the_defaults_shown_in_the_help_are_the_settings():
    help_text = " ".join(train_cmd.get_help(train_cmd.make_context("train", ["-o", "x"])).split())
    assert (
        f"--size INTEGER RANGE Training input side: the ensemble's common kernel (the paper trains every net at {default('size')})."
        in help_text
    )
    for name in ("epochs", "patience", "batch_size", "lr", "weight_decay", "val_fraction", "opt", "schedule"):
        assert f"[default: {default(name)}" in help_text or f"default: {default(name)};" in help_text, name
