#!/usr/bin/env bash
# The main job: set up a fresh machine, build, and train AgileNN with the `tiny` preset on
# the real Fashion-MNIST (Debian's dataset-fashion-mnist) on the CPU — first the reference
# net, then AgileNN with it frozen — and print accuracy, skewness and the remote codes'
# bits per image. Extra arguments go to the AgileNN stage (e.g. --epochs 2).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/tools/setup.sh"
"$root/tools/build.sh" "$root/build"
train="$root/build/apps/agilenn-train"
out=${AGILENN_RUN_DIR:-"$root/runs/fashion-mnist-tiny"}

if [[ ! -f "$out/reference/best.safetensors" ]]; then
  "$train" reference --dataset fashion-mnist --preset tiny --epochs 2 --batch-size 64 --out "$out/reference"
fi
"$train" train --dataset fashion-mnist --preset tiny --epochs 6 --batch-size 64 \
  --reference "$out/reference/best.safetensors" --out "$out/agilenn" "$@"
