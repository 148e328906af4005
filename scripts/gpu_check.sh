#!/usr/bin/env bash
# GPU check of fcnx crop (benchmarks/gpu_check.py) for a GPU machine that reaches no package registry and has its
# own python3 with torch, torchvision and timm: ~200 generated Food-101-like images, the default ensemble and
# inception_v3+xception, fp32 and --half, with and without --compile, batch 1/8/32, and `fcnx crop` with no
# performance flags; images/s, GPU memory, the forward share, and boxes against a CPU reference. Under 5 minutes on
# one GPU. Without CUDA it runs the CPU parts and stops with one line.
#
#   bash scripts/gpu_check.sh pack          # HERE (with the project's venv): fcnx and its plugins as wheels, the few
#                                           # small packages a machine may lack, the source photos -> build/gpu-carry
#   bash scripts/gpu_check.sh [WORK] [...]  # THERE: install what is carried, only what that python3 lacks, offline,
#                                           # into WORK/site (default: a temporary folder, removed at the end); run
#
# Carry build/gpu-carry with the work tree (it is ignored by git; under 64 MiB). The Lite nets' ImageNet weights
# (63 MiB of wheels) do not fit: there they get random weights (the same arithmetic), unless already installed.
# PYTHON (default python3) is the interpreter to use there.
set -euo pipefail
cd "$(dirname "$0")/.."
carry=build/gpu-carry
#: packages fcnx needs that a machine with torch may lack (import name=distribution)
deps="click=click pluggy=pluggy tqdm=tqdm jinja2=jinja2 markupsafe=markupsafe safetensors=safetensors"
#: packages the lent machines' image holds (the device library's KINDS.md) whose wheels would not fit in the carry:
#: OpenCV (the default box; its wheel alone is about 60 MB)
present="cv2=opencv-python-headless"

if [ "${1:-}" = pack ]; then
    python=${PYTHON:-.venv/bin/python}
    rm -rf "$carry" && mkdir -p "$carry/wheels" "$carry/photos"
    "$python" -m pip wheel --no-deps --no-build-isolation -q -w "$carry/wheels" . plugins/fcnx-tiny
    for pair in $deps; do  # from the local pip cache or index, only these, no dependencies
        "$python" -m pip download --no-deps -q -d "$carry/wheels" "${pair#*=}"
    done
    "$python" - "$carry/photos" <<'PY'
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

sys.path.insert(0, "benchmarks")
from gpu_check import SOURCES

for name in SOURCES:
    image = getattr(data, name)()
    image = np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image[:, :, :3]
    Image.fromarray(image).save(Path(sys.argv[1]) / f"{name}.png")
PY
    du -sh "$carry"
    ls -1 "$carry/wheels"
    exit 0
fi

python=${PYTHON:-python3}
[ -d "$carry/wheels" ] || { echo "gpu_check: no $carry: run 'bash scripts/gpu_check.sh pack' where the project is installed"; exit 2; }
work=${1:-$(mktemp -d)}
[ -n "${1:-}" ] || trap 'rm -rf "$work"' EXIT
wheels=("$carry"/wheels/fcnx-*.whl "$carry"/wheels/fcnx_tiny-*.whl)  # always: their entry points register the plugins
for pair in $deps; do
    "$python" -c "import ${pair%%=*}" 2>/dev/null || wheels+=("$carry"/wheels/"${pair#*=}"-*.whl)
done
for pair in $present; do
    "$python" -c "import ${pair%%=*}" 2>/dev/null || { echo "gpu_check: $python lacks ${pair#*=} (too large to carry): install it there"; exit 2; }
done
echo "gpu_check: installing offline into $work/site: ${wheels[*]##*/}"
PIP_NO_INDEX=1 "$python" -m pip install --no-deps --no-index --quiet --target "$work/site" "${wheels[@]}"
PYTHONPATH="$work/site${PYTHONPATH:+:$PYTHONPATH}" PATH="$work/site/bin:$PATH" \
    "$python" benchmarks/gpu_check.py "$work" --photos "$carry/photos" "${@:2}"
