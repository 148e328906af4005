#!/usr/bin/env bash
# Installs everything the tests need on a fresh machine, then runs the whole suite (slow cases too).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e ".[test,keras]"
.venv/bin/python -m pytest "$@"
