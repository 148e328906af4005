#!/usr/bin/env bash
# Installs everything the tests need on a fresh machine, then runs the whole suite (slow cases too).
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e ".[test,keras]"
.venv/bin/python -m pytest "$@"
