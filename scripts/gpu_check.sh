#!/usr/bin/env bash
# GPU check of fcnx crop (benchmarks/gpu_check.py): ~200 generated Food-101-like images, the default ensemble and
# inception_v3+xception, fp32 and --half, with and without --compile, batch 1/8/32; images/s, GPU memory, the
# forward share, and boxes against a CPU reference on a subset. Under 5 minutes on one GPU; needs only the README's
# set-up (pip install -e ".[test]"). Without CUDA it runs the CPU parts and stops with one line.
# Usage: bash scripts/gpu_check.sh [WORK_FOLDER]   (default: a new temporary folder, removed at the end)
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
work=${1:-$(mktemp -d)}
[ -n "${1:-}" ] || trap 'rm -rf "$work"' EXIT
"$python" benchmarks/gpu_check.py "$work" "${@:2}"
