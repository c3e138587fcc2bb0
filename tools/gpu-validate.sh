#!/usr/bin/env bash
# The CUDA side of agilenn checked in one call on a GPU machine: configure and build for
# sm_90, run the gpu-labelled tests (then again under compute-sanitizer's memcheck where it
# exists), the unit tests, the GPU kernel and step benchmarks and the peers, and print a
# short table last. Logs and JSON go to $OUT (or ./gpu-validate-out).
#
# The GPU machine has no network and lacks our Debian build dependencies: run
# tools/gpu-deps.sh on the development machine first, and carry .gpu-deps with the call.
# cuDNN and NCCL are found in the toolkit or in the Python packages nvidia-cudnn-cu13 /
# nvidia-nccl-cu13. Usage: tools/gpu-validate.sh [--quick]   (--quick: no sanitizer, no peers)
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-"$root/gpu-validate-out"}
build="$root/build-gpu"
quick=${1:-}
mkdir -p "$out"
declare -a summary=()
record() { summary+=("$(printf '%-28s %-6s %s' "$1" "$2" "$3")"); }
status_of() { [[ $1 -eq 0 ]] && echo ok || echo FAIL; }

{
  echo "date: $(date -u +%FT%TZ)"
  echo "commit: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader
  nvcc --version | tail -2
  g++ --version | head -1
  cmake --version | head -1
} | tee "$out/machine.txt"

# Unpack the carried .debs into a private prefix.
prefix="$root/.gpu-deps/root"
if [[ -d "$root/.gpu-deps/debs" && ! -d "$prefix" ]]; then
  mkdir -p "$prefix"
  for deb in "$root"/.gpu-deps/debs/*.deb; do
    if command -v dpkg-deb >/dev/null; then
      dpkg-deb -x "$deb" "$prefix"
    else
      member=$(ar t "$deb" | grep '^data\.tar')
      (cd "$prefix" && ar p "$deb" "$member" | tar -x --auto-compress -f - 2>/dev/null ||
        ar p "$deb" "$member" | tar -xJ -f -)
    fi
  done
fi
arch_lib="$prefix/usr/lib/x86_64-linux-gnu"
py_libs=$(python3 -c "import nvidia, os; print(':'.join(os.path.join(p, d, 'lib') for p in nvidia.__path__ for d in ('cudnn', 'nccl', 'cublas')))" 2>/dev/null || true)
export LD_LIBRARY_PATH="$arch_lib:$arch_lib/openblas-pthread:${py_libs}:${LD_LIBRARY_PATH:-}"

echo "== configure and build (sm_90)"
start=$(date +%s)
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix/usr" \
  >"$out/configure.log" 2>&1 &&
  cmake --build "$build" -j "$(nproc)" >"$out/build.log" 2>&1
rc=$?
record build "$(status_of $rc)" "$(($(date +%s) - start)) s; $(grep -o 'CUDA backend [A-Z]*' "$out/configure.log" | head -1)"
if [[ $rc -ne 0 ]]; then
  tail -40 "$out/configure.log" "$out/build.log"
  printf '%s\n' "${summary[@]}"
  exit 1
fi

echo "== gpu tests"
ctest --test-dir "$build" -L gpu --output-on-failure --timeout 600 >"$out/ctest-gpu.log" 2>&1
rc=$?
record "gpu tests" "$(status_of $rc)" "$(grep -E 'tests passed|tests failed' "$out/ctest-gpu.log" | tail -1)"
grep -E '^\s+[0-9]+ - .*\(Failed|\(Failed|Skipped' "$out/ctest-gpu.log" | head -20

echo "== unit tests"
ctest --test-dir "$build" -L unit --timeout 600 -j "$(nproc)" >"$out/ctest-unit.log" 2>&1
rc=$?
record "unit tests" "$(status_of $rc)" "$(grep -E 'tests passed|tests failed' "$out/ctest-unit.log" | tail -1)"

if [[ "$quick" != "--quick" ]] && command -v compute-sanitizer >/dev/null; then
  echo "== compute-sanitizer memcheck"
  timeout 300 compute-sanitizer --tool memcheck --error-exitcode 86 --print-limit 20 \
    "$build/tests/test_gpu" --gtest_filter='OpParity*:*Twin*:*Depthwise*:*Optimizer*:GraphReplay*' >"$out/memcheck.log" 2>&1
  rc=$?
  record memcheck "$(status_of $rc)" "$(grep -E 'ERROR SUMMARY' "$out/memcheck.log" | tail -1) (rc $rc)"
fi

echo "== benchmarks"
"$build/bench/agilenn-bench" --benchmark_filter="${AGILENN_GPU_BENCH_FILTER:-Cuda|Gpu|GPU|cuda}" \
  --benchmark_format=console --benchmark_out="$out/bench-gpu.json" --benchmark_out_format=json \
  >"$out/bench-gpu.txt" 2>&1
rc=$?
record "agilenn-bench (GPU)" "$(status_of $rc)" "$out/bench-gpu.json"

if [[ "$quick" != "--quick" && -x "$root/bench/peers/run.sh" ]]; then
  echo "== peers"
  "$root/bench/peers/run.sh" --device cuda --build-dir "$build" --results "$out" \
    --config tiny:32 --config paper:64:10 >"$out/peers.txt" 2>&1
  rc=$?
  record peers "$(status_of $rc)" "$out/peers.txt"
fi

echo
cat "$out/bench-gpu.txt" | grep -vE '^(Running|Run on|CPU Caches|  L[0-9]|Load Average|\*\*\*)' | tail -60
[[ -f "$out/peers.txt" ]] && tail -15 "$out/peers.txt"
echo
echo "== summary ($(head -3 "$out/machine.txt" | tr '\n' ' '))"
printf '%s\n' "${summary[@]}"
