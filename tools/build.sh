#!/usr/bin/env bash
# Configures and builds one tree. Usage: tools/build.sh [build-dir] [extra cmake args...]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-"$root/build"}
shift || true
export CCACHE_DIR=${CCACHE_DIR:-"$HOME/.cache/agilenn-ccache"}
# Paths relative to the checkout, so another clone or build folder hits the same cache.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-"$root"} CCACHE_NOHASHDIR=1
cmake -S "$root" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build "$dir" -j "$(nproc)"
