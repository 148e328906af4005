#!/usr/bin/env bash
# Installs everything the tests need on a fresh machine, then runs the whole suite (slow cases too).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e ".[test,keras,ray,bench]"  # bench: grad-cam, for the real-photo check of issue 14
.venv/bin/pip install -q -e plugins/fcnx-tiny
# Fashion-MNIST for fcnx.bench.fashion, and Chromium + its driver for fcnx review's browser tests
# (tests that need them skip without them; Selenium is pointed at these, it downloads nothing)
if [ "$(id -u)" = 0 ] && { [ ! -d /usr/share/datasets/fashion-mnist ] || [ ! -x /usr/bin/chromedriver ]; }; then
    apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist chromium chromium-driver
fi
.venv/bin/ruff check -q .
.venv/bin/ruff format --check -q .
.venv/bin/mypy
# two test processes (pytest-xdist; each test file stays in one), one thread each: on two cores this is
# about 3x faster than one process whose two torch threads spin against each other (docs: CONTRIBUTING.md)
OMP_NUM_THREADS=1 .venv/bin/python -m pytest -n 2 --dist loadfile "$@"
