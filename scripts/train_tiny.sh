#!/usr/bin/env bash
# Re-trains the weights fcnx-tiny ships (plugins/fcnx-tiny/fcnx_tiny/weights/) and re-makes docs/results.md:
# about 10 minutes of training and 5 of benchmark on 2 CPU cores. Needs Debian's dataset-fashion-mnist.
# Usage: bash scripts/train_tiny.sh [WORK_FOLDER]   (default build/tiny; must not exist yet)
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-build/tiny}
fcnx=${FCNX:-.venv/bin/fcnx}
weights=plugins/fcnx-tiny/fcnx_tiny/weights
export OMP_NUM_THREADS=1  # tiny nets: one thread per process is faster, and immune to a busy machine
"$fcnx" bench data -o "$work/data" --train-per-class 200 --test-per-class 20 --seed 0
mkdir -p "$weights"
for net in tiny_vgg tiny_resnet tiny_inception tiny_mobilenet; do
    "$fcnx" train --net "$net" --data "$work/data" -o "$work/$net" --size 56 --weights none --schedule all \
        --epochs 12 --patience 12 --batch-size 32 --lr 3e-3 --workers 1 --no-augment --seed 0 -q
    cp "$work/$net/best.safetensors" "$weights/$net.safetensors"
done
"$fcnx" bench localization --data "$work/data" -o docs
