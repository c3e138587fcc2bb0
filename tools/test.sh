#!/usr/bin/env bash
# The whole test suite from a fresh clone: setup, the default build (CUDA targets too
# when nvcc is present, gpu tests skip without a GPU), then a CPU-only build so
# neither configuration can rot.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/tools/setup.sh"

"$root/tools/build.sh" "$root/build"
ctest --test-dir "$root/build" --output-on-failure -j "$(nproc)"

"$root/tools/build.sh" "$root/build-cpu-only" -DAGILENN_CUDA=OFF
ctest --test-dir "$root/build-cpu-only" --output-on-failure -j "$(nproc)" -L unit
