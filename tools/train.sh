#!/usr/bin/env bash
# The main job: set up a fresh machine, build, and train AgileNN with the `tiny` preset on
# the real Fashion-MNIST (Debian's dataset-fashion-mnist) on the CPU — first the reference
# net, then AgileNN with it frozen — and print accuracy, skewness and the remote codes'
# bits per image; then exports the split (tools/verify-export.py checks it in onnxruntime and
# LiteRT). Extra arguments go to the AgileNN stage (e.g. --epochs 2).
#
# AGILENN_BASELINE=1 also trains the same model without the attribution losses (`train
# --plain`, same epochs and recipe) into $out/plain, the baseline of the README's table.
# The tiny preset's recipe (no augmentation, Adam 1e-2 for the reference net, SGDW 0.125,
# batch-norm statistics recomputed before each evaluation) is its default; see
# engine/models/presets.cpp.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/tools/setup.sh" --export
"$root/tools/build.sh" "$root/build"
train="$root/build/apps/agilenn-train"
out=${AGILENN_RUN_DIR:-"$root/runs/fashion-mnist-tiny"}

start=$SECONDS
if [[ ! -f "$out/reference/best.safetensors" ]]; then
  "$train" reference --dataset fashion-mnist --preset tiny --epochs 2 --batch-size 64 --out "$out/reference"
fi
"$train" train --dataset fashion-mnist --preset tiny --epochs 7 --batch-size 64 \
  --reference "$out/reference/best.safetensors" --out "$out/agilenn" "$@"
echo "main job: $((SECONDS - start)) s (reference net and AgileNN)"
# The deployable split, verified in its runtimes: (a) engine, (b) float split, (c) int8 device
# half, and the remote codes' bits per image. Each run exports to a directory of its own.
split="$out/split-$(date -u +%Y%m%dT%H%M%SZ)"
"$root/build/apps/agilenn-export" "$out/agilenn/best.safetensors" --out "$split"
python3 "$root/tools/verify-export.py" "$split"
if [[ "${AGILENN_BASELINE:-0}" == 1 ]]; then
  "$train" train --plain --dataset fashion-mnist --preset tiny --epochs 7 --batch-size 64 --out "$out/plain" "$@"
fi
