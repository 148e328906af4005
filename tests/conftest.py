"""Shared fixtures: a clean plugin registry per test that registers plugins inline."""

from __future__ import annotations

import os
import signal

import pytest

from fcnx.backbones import plugins, registry

# The CLI on torch in one process, as before `--backend auto` and `--jobs auto`: tests of other things neither
# export every random net to ONNX nor start worker processes (which would not see the test backbones that
# tests register inline). Set at import, so that environments copied for subprocesses have them too. Tests of
# those defaults remove them with monkeypatch.delenv (tests/jobs/test_workers.py).
os.environ["FCNX_BACKEND"] = "torch"
os.environ["FCNX_JOBS"] = "1"


@pytest.fixture
def clean_registry():
    """Yield the plugin manager; afterwards unregister plugins the test added and forget broken ones."""
    plugins.load_plugins()
    before = set(plugins.pm.get_plugins())
    broken = dict(plugins.broken)
    registry.refresh()
    yield plugins.pm
    for plugin in set(plugins.pm.get_plugins()) - before:
        plugins.pm.unregister(plugin)
    plugins.broken.clear()
    plugins.broken.update(broken)
    registry.refresh()


@pytest.fixture
def one_thread():
    """Torch on one thread for the test: tiny nets run faster so, and immune to a busy machine
    (on a busy 2-core machine two spinning threads make them ten times slower)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_registry(one_thread):
    """The tiny test backbones of ``tiny_backbones.py`` registered for one test, on one thread."""
    import tiny_backbones

    plugin = tiny_backbones.register()
    yield plugins.pm
    plugins.pm.unregister(plugin)
    registry.refresh()


@pytest.fixture
def tiny_train(one_thread):
    """The trainable test backbone of ``tiny_train_backbone.py`` registered for one test, on one thread."""
    import tiny_train_backbone

    plugin = tiny_train_backbone.register()
    yield tiny_train_backbone.SPEC
    plugins.pm.unregister(plugin)
    registry.refresh()


@pytest.fixture
def no_hang():
    """Fail a test that blocks (opening a FIFO waits for a writer for ever) instead of hanging the suite:
    ``pytestmark = pytest.mark.usefixtures("no_hang")``."""

    def hung(*_):
        raise TimeoutError("the test blocked")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)
