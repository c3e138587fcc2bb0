#!/usr/bin/env bash
# agilenn and its PyTorch / JAX peers on one device, in one run, in one table.
#
# Usage: bench/peers/run.sh [--device cpu|cuda] [--config PRESET:BATCH[:ITERS]]... [--ig-steps M]
#                           [--ig-rule RULE] [--quantizer straight-through|soft] [--iters N] [--warmup N]
#                           [--no-f64-check] [--build-dir DIR | --bin-dir DIR] [--results DIR]
# Default: --device cpu --config tiny:32 --ig-steps 2 --ig-rule trapezoid --iters 20 --warmup 3
# (--m and --rule: the older names of --ig-steps and --ig-rule).
#
# For each configuration: agilenn-peer-reference writes the case (weights, batch,
# agilenn's loss/metrics/gradients; f32, and f64 for a tight check) and times agilenn's
# step; agilenn-bench runs the matching BM_Step/<device>/<preset>/<batch> (m = 2 trapezoid); each
# peer checks its numbers against agilenn's and times its modes. Peers that cannot run
# (PyTorch or JAX absent, no device) are skipped with the reason. The table is printed
# and written with every figure to <results>/peers-<device>-<date>-<commit>.json.
# Exit status: 0, or 1 if a peer disagreed with agilenn.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

device=cpu m=2 rule=trapezoid quantizer=straight-through iters=20 warmup=3 f64=1
build=${AGILENN_BUILD_DIR:-$root/build} bin_dir= results=$root/bench/results
configs=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --device) device=$2; shift 2 ;;
    --config) configs+=("$2"); shift 2 ;;
    --ig-steps|--m) m=$2; shift 2 ;;
    --ig-rule|--rule) rule=$2; shift 2 ;;
    --quantizer) quantizer=$2; shift 2 ;;
    --iters) iters=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --no-f64-check) f64=0; shift ;;
    --build-dir) build=$2; shift 2 ;;
    --bin-dir) bin_dir=$2; shift 2 ;;  # prebuilt programs (tools/gpu-bundle.sh's bin/)
    --results) results=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ ${#configs[@]} -gt 0 ]] || configs=(tiny:32)

ref=$build/bench/agilenn-peer-reference bench=$build/bench/agilenn-bench
[[ -n $bin_dir ]] && ref=$bin_dir/agilenn-peer-reference bench=$bin_dir/agilenn-bench
if [[ -z $bin_dir && ( ! -x $ref || ! -x $bench ) ]]; then
  echo "== building $build (tools/build.sh)"
  "$root/tools/build.sh" "$build"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/agilenn-peers.XXXXXX")
trap 'rm -rf "$work"' EXIT
status=0 k=0

for cfg in "${configs[@]}"; do
  IFS=: read -r preset batch n <<<"$cfg"
  n=${n:-$iters}
  d=$work/$((++k))-$preset-$batch
  mkdir -p "$d"
  cut -d' ' -f1-3 /proc/loadavg >"$d/load-start" 2>/dev/null || true
  echo "== $preset batch $batch, m $m $rule, $quantizer quantizer, device $device, $n timed steps (load: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null))"
  common=(--preset "$preset" --batch-size "$batch" --ig-steps "$m" --ig-rule "$rule" --quantizer "$quantizer")
  "$ref" "${common[@]}" --dtype f32 --out "$d/f32"
  for kind in agilenn plain; do  # each timed in a process of its own, as each peer mode is
    "$ref" "${common[@]}" --dtype f32 --out "$d/f32" --time "$n" --kind $kind --warmup "$warmup" --device "$device"
    # and rematerialised as far as that goes (agilenn-train --memory-budget-mb 0)
    "$ref" "${common[@]}" --dtype f32 --out "$d/f32" --time "$n" --kind $kind --warmup "$warmup" --device "$device" \
      --memory-budget-mb 0
  done
  checks=()
  if [[ $f64 == 1 ]]; then
    "$ref" "${common[@]}" --dtype f64 --out "$d/f64"
    checks=(--check-dir "$d/f64")
  fi

  # agilenn-bench's BM_Step/<device>/<preset>/<batch>/<agilenn|plain>[-remat]: m = 2 trapezoid, straight-through.
  if [[ $m == 2 && $rule == trapezoid && $quantizer == straight-through ]]; then
    filter="^BM_Step/$device/$preset/$batch/(agilenn|plain)(-remat)?(/|\$)"
    listed=$("$bench" --benchmark_list_tests 2>/dev/null || true)
    if grep -Eq "$filter" <<<"$listed"; then
      "$bench" --benchmark_filter="$filter" --benchmark_format=json >"$d/bench.json"
      python3 - "$d/bench.json" <<'EOF'
import json, sys
for b in json.load(open(sys.argv[1]))["benchmarks"]:
    print(f"  agilenn-bench {b['name']}: {b['real_time']:.2f} {b['time_unit']}, {b.get('images/s', 0):.1f} images/s")
EOF
    else
      echo "  agilenn-bench has no BM_Step for $device $preset batch $batch: agilenn's figures come from its timing loop"
    fi
  fi

  for peer in torch jax; do  # (load average recorded at the start and the end of each configuration)
    echo "-- $peer peer"
    rc=0
    python3 "$here/${peer}_step.py" --dir "$d/f32" "${checks[@]}" --device "$device" --iters "$n" \
      --warmup "$warmup" --json "$d/$peer.json" || rc=$?
    case $rc in
      0|3) ;;  # ok, skipped
      1) echo "!! $peer disagrees with agilenn"; status=1 ;;
      *) echo "!! $peer failed (exit $rc)"; status=1 ;;
    esac
  done
  cut -d' ' -f1-3 /proc/loadavg >"$d/load-end" 2>/dev/null || true
done

python3 "$here/report.py" --work "$work" --device "$device" --root "$root" --out "$results"
exit $status
