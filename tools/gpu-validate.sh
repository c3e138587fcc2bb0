#!/usr/bin/env bash
# The CUDA side of agilenn checked in one time-boxed call on a GPU machine, from the
# prebuilt bundle of tools/gpu-bundle.sh (carry .gpu-bundle with the device call):
#
#   bundle     unpack, find cuBLAS/cuDNN there, check every program loads (else build from
#              source with the carried .gpu-deps, see tools/gpu-deps.sh)
#   gpu-tests  the gpu-labelled GoogleTest binary (CUDA vs CPU parity, twins, training)
#   train      a short tiny-preset run with agilenn-train --device cuda (CUDA graph replay)
#              against the same run on the CPU: loss curve and checkpoint
#   bench      kernel and step benchmarks (paper preset, batch 64), ceilings, DESIGN §8 summary
#   peers      the PyTorch and JAX peers at paper/64 on the same GPU
#   memcheck   compute-sanitizer memcheck over the hand-written kernels, where the runtime
#              lets it see the device; otherwise "skipped: reason"
#   unit       the unit tests, on that machine's CPU, with what time is left
#
# Phases run in that order (value first), each with its own budget, the whole within
# --budget seconds (default 480). summary.txt is written first and rewritten after every
# phase, together with logs.tar.gz, so what ran comes back even if the call is cut. $OUT
# (or --out) receives at most 8 files: summary.txt, logs.tar.gz, bench-gpu.json, peers.json.
#
# Usage: tools/gpu-validate.sh [--budget S] [--bundle TARBALL|DIR] [--out DIR] [--quick] [--rehearse]
#   --quick     no peers, no memcheck
#   --rehearse  here, without a GPU: the same phases, GPU parts skipped with their reasons;
#               checks the bundle, the file count and the budget logic (tests run this).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
budget=480 quick=0 rehearse=0
bundle="$root/.gpu-bundle/agilenn-gpu-bundle.tar.xz"
out=${OUT:-"$root/gpu-validate-out"}
while [[ $# -gt 0 ]]; do
  case $1 in
    --budget) budget=$2; shift 2 ;;
    --bundle) bundle=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    --rehearse) rehearse=1; shift ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "gpu-validate: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$budget" =~ ^[0-9]+$ ]] || { echo "gpu-validate: --budget wants whole seconds, got '$budget'" >&2; exit 2; }

started=$(date +%s)
deadline=$((started + budget))
reserve=8  # seconds kept back for the last summary and log archive
mkdir -p "$out"
work=$(mktemp -d "${TMPDIR:-/tmp}/agilenn-gpu-validate.XXXXXX")
logs="$work/logs"
mkdir -p "$logs"
trap 'rm -rf "$work"' EXIT
declare -a rows=()
header=""
failed=0

remaining() { echo $((deadline - $(date +%s))); }
pack_logs() { tar -C "$work" -czf "$out/logs.tar.gz.tmp" logs 2>/dev/null && mv "$out/logs.tar.gz.tmp" "$out/logs.tar.gz"; }
write_summary() {
  {
    echo "$header"
    printf '%-10s %-8s %s\n' phase status detail
    printf '%s\n' "${rows[@]}"
    echo "elapsed $(($(date +%s) - started)) s of a $budget s budget"
  } >"$out/summary.txt.tmp" && mv "$out/summary.txt.tmp" "$out/summary.txt"
  pack_logs
}
# record PHASE STATUS DETAIL: status is ok, FAIL, TIMEOUT or skipped.
record() {
  rows+=("$(printf '%-10s %-8s %s' "$1" "$2" "$3")")
  [[ $2 == FAIL || $2 == TIMEOUT ]] && failed=1
  echo "== $1: $2 $3"
  write_summary
}
# The seconds a phase may use: what it wants, or what is left before the reserve.
phase_budget() {
  local left=$(($(remaining) - reserve))
  ((left < 5)) && { echo 0; return; }
  ((left < $1)) && { echo "$left"; return; }
  echo "$1"
}
# timed PHASE-LOG SECONDS CMD...: runs CMD under its budget into logs/PHASE-LOG.log; returns
# its status, 124 on timeout.
timed() {
  local log="$logs/$1.log" secs=$2
  shift 2
  timeout -k 5 "$secs" "$@" >>"$log" 2>&1
}
status_word() { case $1 in 0) echo ok ;; 124|137) echo TIMEOUT ;; *) echo FAIL ;; esac; }

# ---- machine -------------------------------------------------------------------------
gpu_name=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)
have_gpu=0
[[ -n "$gpu_name" && $rehearse == 0 ]] && have_gpu=1
kernel=$(uname -r)
runtime="kernel $kernel"
[[ $kernel == 4.4.0 ]] && runtime="gVisor (kernel 4.4.0)"
{
  echo "date: $(date -u +%FT%TZ)"
  echo "gpu: ${gpu_name:-none}"
  echo "runtime: $runtime"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores"
  nvcc --version 2>/dev/null | tail -1
  python3 --version 2>&1
  nvidia-smi 2>&1 | head -15
} >"$logs/machine.txt"
header="agilenn gpu-validate $(date -u +%F) | gpu: ${gpu_name:-none} | $runtime$([[ $rehearse == 1 ]] && echo ' | REHEARSAL')"
write_summary

# ---- bundle --------------------------------------------------------------------------
# cuBLAS, cuDNN and NCCL from the machine: the toolkit's folders, then the nvidia-* Python packages.
device_lib_path() {
  local dirs=() d
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do [[ -d $d ]] && dirs+=("$d"); done
  local py
  py=$(python3 - 2>/dev/null <<'EOF'
import glob, os
try:
    import nvidia
    print(":".join(sorted({os.path.dirname(p) for b in nvidia.__path__ for p in glob.glob(os.path.join(b, "*", "lib", "lib*.so*"))})))
except ImportError:
    pass
EOF
  )
  local joined
  joined=$(IFS=:; echo "${dirs[*]}")
  echo "${joined}${py:+:$py}"
}

# The fallback: build from source there, with the carried Debian -dev packages.
build_from_source() {
  local secs=$1 prefix="$work/deps" build="$work/build"
  [[ -d "$root/.gpu-deps/debs" ]] || { echo "no .gpu-deps/debs carried (run tools/gpu-deps.sh here first)"; return 1; }
  mkdir -p "$prefix"
  local deb member
  for deb in "$root"/.gpu-deps/debs/*.deb; do
    if command -v dpkg-deb >/dev/null; then
      dpkg-deb -x "$deb" "$prefix"
    else
      member=$(ar t "$deb" | grep '^data\.tar')
      (cd "$prefix" && ar p "$deb" "$member" | tar -x --auto-compress -f - 2>/dev/null || ar p "$deb" "$member" | tar -xJ -f -)
    fi
  done
  # Debian's -dev packages link some files absolutely into /usr (zlib's libz.so): point
  # such links into the prefix, where their targets were unpacked.
  local link target
  while IFS= read -r link; do
    target=$(readlink "$link")
    [[ $target == /* && -e "$prefix$target" ]] && ln -sfn "$prefix$target" "$link"
  done < <(find "$prefix" -type l)
  local multi="$prefix/usr/include/x86_64-linux-gnu" libs="$prefix/usr/lib/x86_64-linux-gnu"
  export LD_LIBRARY_PATH="$libs:$libs/openblas-pthread:$LD_LIBRARY_PATH"
  # jconfig.h and OpenBLAS's headers sit in the multiarch include folder.
  timeout -k 5 "$secs" cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$prefix/usr" -DCMAKE_INCLUDE_PATH="$multi" -DCMAKE_LIBRARY_PATH="$libs" \
    -DCMAKE_CXX_FLAGS="-isystem $multi" -DCMAKE_CUDA_FLAGS="-isystem $multi" &&
    timeout -k 5 "$secs" cmake --build "$build" -j "$(nproc)" \
      --target test_gpu test_unit agilenn-train agilenn-bench agilenn-peer-reference || return 1
  mkdir -p "$work/bundle/bin"
  cp "$build"/tests/test_gpu "$build"/tests/test_unit "$build"/apps/agilenn-train "$build"/bench/agilenn-bench \
    "$build"/bench/agilenn-peer-reference "$work/bundle/bin/"
  grep -h '^commit:' "$work/bundle/MANIFEST" 2>/dev/null || echo "commit: source build" >"$work/bundle/MANIFEST"
}

bin="$work/bundle/bin"
phase_bundle() {
  local log="$logs/bundle.log"
  if [[ -d "$bundle" ]]; then
    mkdir -p "$work/bundle" && cp -a "$bundle"/. "$work/bundle/"
  elif [[ -f "$bundle" ]]; then
    mkdir -p "$work/bundle"
    tar -xJf "$bundle" -C "$work/bundle" --strip-components=1 2>>"$log" ||
      python3 -c "import sys, tarfile; t = tarfile.open(sys.argv[1]); [setattr(m, 'name', m.name.split('/', 1)[1]) for m in t.getmembers() if '/' in m.name]; t.extractall(sys.argv[2], [m for m in t.getmembers() if '/' not in m.name or m.name])" "$bundle" "$work/bundle" 2>>"$log"
  else
    echo "no bundle at $bundle (run tools/gpu-bundle.sh here and carry .gpu-bundle)" >>"$log"
  fi
  export LD_LIBRARY_PATH
  LD_LIBRARY_PATH="$(device_lib_path)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH" >>"$log"
  commit=$(sed -n 's/^commit: //p' "$work/bundle/MANIFEST" 2>/dev/null)
  export AGILENN_COMMIT=${commit:-unknown}
  header="$header | bundle ${commit:-none}"
  local loads=1 p
  for p in test_gpu test_unit agilenn-train agilenn-bench agilenn-peer-reference; do
    if [[ ! -x "$bin/$p" ]]; then loads=0; echo "$p: missing from the bundle" >>"$log"; continue; fi
    if ! ldd "$bin/$p" >>"$log" 2>&1 || ldd "$bin/$p" 2>/dev/null | grep -q 'not found'; then
      loads=0
      echo "$p: $(ldd "$bin/$p" 2>&1 | grep 'not found' | tr -s ' \t' ' ' | tr '\n' ';')" >>"$log"
    fi
  done
  # cuDNN: the bundle needs the minor version it was built against, or a newer one.
  local built have
  built=$(sed -n 's/^cudnn built against: \([0-9.]*\).*/\1/p' "$work/bundle/MANIFEST" 2>/dev/null)
  have=$(python3 -c "import ctypes; v = ctypes.CDLL('libcudnn.so.9').cudnnGetVersion(); print(f'{v // 10000}.{v // 100 % 100}.{v % 100}')" 2>/dev/null)
  local cudnn_note="cuDNN built ${built:-?}, found ${have:-none}"
  if [[ -n "$have" && -n "$built" ]] && [[ "$(printf '%s\n%s\n' "$built" "$have" | sort -V | head -1)" != "$built" ]]; then
    cudnn_note="$cudnn_note (OLDER than built: not guaranteed to work)"
  fi
  if [[ $loads == 1 && $rehearse == 1 ]]; then
    "$root/tools/gpu-bundle-check.sh" "$work/bundle" >>"$log" 2>&1 || loads=0
  fi
  if [[ $loads == 1 ]]; then
    record bundle ok "$(ls "$bin" | wc -l) programs load; $cudnn_note"
    return 0
  fi
  local secs
  secs=$(phase_budget 300)
  if [[ $rehearse == 1 ]]; then
    record bundle FAIL "programs do not load here: see logs/bundle.log"
    return 1
  fi
  record bundle FAIL "prebuilt programs do not load ($(grep -c 'not found\|missing' "$log") problems); building from source ($secs s)"
  local start_build
  start_build=$(date +%s)
  if build_from_source "$secs" >>"$logs/source-build.log" 2>&1; then
    record build ok "from source in $(($(date +%s) - start_build)) s; $cudnn_note"
    return 0
  fi
  record build FAIL "source build failed: see logs/source-build.log"
  return 1
}

# ---- phases --------------------------------------------------------------------------
gtest_counts() {  # the GoogleTest totals of a log, as one phrase
  local log=$1
  local passed failed_n skipped
  passed=$(grep -oE '^\[  PASSED  \] [0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1)
  failed_n=$(grep -oE '^\[  FAILED  \] [0-9]+ test' "$log" | grep -oE '[0-9]+' | tail -1)
  skipped=$(grep -oE '^\[  SKIPPED \] [0-9]+ test' "$log" | grep -oE '[0-9]+' | tail -1)
  echo "${passed:-0} passed, ${failed_n:-0} failed, ${skipped:-0} skipped"
}

phase_gpu_tests() {
  local secs rc
  secs=$(phase_budget 150)
  ((secs == 0)) && { record gpu-tests skipped "budget spent"; return; }
  timed gpu-tests "$secs" "$bin/test_gpu" --gtest_output="xml:$logs/test_gpu.xml"
  rc=$?
  local counts
  counts=$(gtest_counts "$logs/gpu-tests.log")
  if [[ $have_gpu == 0 ]]; then
    local why
    why=$(grep -m1 -A1 'Skipped' "$logs/gpu-tests.log" | grep -v Skipped | head -1 | sed 's/^[^:]*: //' | cut -c1-80)
    [[ $rc == 0 ]] && record gpu-tests skipped "$counts: ${why:-no GPU}" || record gpu-tests FAIL "rc $rc, $counts"
    return
  fi
  local failing
  failing=$(grep -E '^\[  FAILED  \] [A-Za-z]' "$logs/gpu-tests.log" | sed 's/^\[  FAILED  \] //; s/ (.*//; s/, where.*//' | sort -u | head -8 | tr '\n' ' ')
  record gpu-tests "$(status_word $rc)" "$counts${failing:+; failing: $failing}"
}

phase_unit() {
  local secs rc filter=()
  secs=$(phase_budget 60)
  ((secs == 0)) && { record unit skipped "budget spent"; return; }
  # A rehearsal runs a slice: CI runs the whole unit suite anyway.
  [[ $rehearse == 1 ]] && filter=(--gtest_filter='Tensor*:Graph*')
  timed unit "$secs" "$bin/test_unit" "${filter[@]}"
  rc=$?
  record unit "$(status_word $rc)" "$(gtest_counts "$logs/unit.log")$([[ $rehearse == 1 ]] && echo ' (rehearsal slice)')"
}

phase_train() {
  local secs
  secs=$(phase_budget 90)
  ((secs == 0)) && { record train skipped "budget spent"; return; }
  local t="$bin/agilenn-train" w="$work/train" steps=24 ref_steps=40
  [[ $rehearse == 1 ]] && steps=4 ref_steps=4
  local common=(--dataset synthetic --preset tiny --batch-size 32 --seed 5 --test-limit 256)
  local phase_end=$(($(date +%s) + secs))
  left() { echo $((phase_end - $(date +%s))); }
  timed train "$(left)" "$t" reference "${common[@]}" --max-steps $ref_steps --out "$w/ref" ||
    { record train FAIL "reference run on the CPU failed: see logs/train.log"; return; }
  local ref="$w/ref/best.safetensors"
  # Without a GPU (a rehearsal) a second CPU run stands in for the GPU's: the comparison
  # itself is exercised, and must find the two identical.
  local device=cuda gpu_rc cpu_rc gpu_time cpu_time s
  [[ $have_gpu == 0 ]] && device=cpu
  s=$(date +%s)
  timed train "$(left)" "$t" train "${common[@]}" --reference "$ref" --max-steps $steps --device $device --out "$w/gpu"
  gpu_rc=$?
  gpu_time=$(($(date +%s) - s))
  s=$(date +%s)
  timed train "$(left)" "$t" train "${common[@]}" --reference "$ref" --max-steps $steps --out "$w/cpu"
  cpu_rc=$?
  cpu_time=$(($(date +%s) - s))
  if [[ $gpu_rc != 0 || $cpu_rc != 0 ]]; then
    record train "$(status_word $((gpu_rc != 0 ? gpu_rc : cpu_rc)))" "rc $device $gpu_rc, cpu $cpu_rc: see logs/train.log"
    return
  fi
  python3 "$root/tools/compare-runs.py" "$w/cpu" "$w/gpu" >"$logs/train-compare.txt" 2>&1
  local rc=$? verdict
  verdict=$(grep '^verdict' "$logs/train-compare.txt" | sed 's/^verdict: [a-zA-Z]*: //')
  if [[ $have_gpu == 0 ]]; then
    [[ $rc == 0 ]] && record train skipped "no GPU; two CPU runs ($steps steps) compared: ${verdict:-?}" ||
      record train FAIL "two CPU runs differ: ${verdict:-see logs/train-compare.txt}"
    return
  fi
  record train "$(status_word $rc)" "$steps steps gpu ${gpu_time}s (graph replay) cpu ${cpu_time}s; ${verdict:-see logs/train-compare.txt}"
}

phase_bench() {
  local secs rc
  secs=$(phase_budget 120)
  ((secs == 0)) && { record bench skipped "budget spent"; return; }
  local filter='^BM_(Step/cuda/(paper/64|tiny/32)/|ExplainabilityCost/cuda/paper/64|Depthwise/cuda/|Quantize/cuda/|QuantizeBackward/cuda/|AttributionStats/cuda/|AttributionStatsBackward/cuda/|SoftmaxCrossEntropy/cuda/)'
  timed bench "$secs" "$bin/agilenn-bench" --benchmark_filter="$filter" \
    --benchmark_out="$out/bench-gpu.json" --benchmark_out_format=json
  rc=$?
  local n errors
  n=$(grep -cE '^BM_' "$logs/bench.log")
  errors=$(grep -cE '^BM_.*(ERROR|no GPU)' "$logs/bench.log")
  if [[ $have_gpu == 0 ]]; then
    [[ $rc == 0 ]] && record bench skipped "no GPU: $n benchmarks listed, $errors skipped with the reason" ||
      record bench FAIL "rc $rc: see logs/bench.log"
    return
  fi
  local step
  step=$(grep -E '^BM_Step/cuda/paper/64/agilenn' "$logs/bench.log" | head -1 | grep -oE 'images/s=[0-9.]+[kM]?' | cut -d= -f2)
  record bench "$(status_word $rc)" "$n benchmarks, $errors errors; paper/64 AgileNN step ${step:-?} images/s; bench-gpu.json"
}

phase_peers() {
  local secs rc
  if [[ $quick == 1 ]]; then record peers skipped "--quick"; return; fi
  if [[ $have_gpu == 0 ]]; then record peers skipped "no GPU"; return; fi
  secs=$(phase_budget 240)
  ((secs == 0)) && { record peers skipped "budget spent"; return; }
  mkdir -p "$work/peers"
  timed peers "$secs" "$root/bench/peers/run.sh" --device cuda --bin-dir "$bin" --results "$work/peers" \
    --config paper:64:10 --no-f64-check
  rc=$?
  local json
  json=$(ls "$work"/peers/peers-*.json 2>/dev/null | head -1)
  [[ -n "$json" ]] && cp "$json" "$out/peers.json"
  local verdicts
  verdicts=$(grep -oE '^(torch|jax) [a-z.]+ [a-z-]+ vs agilenn.*: (OK|[A-Z ]+)$' "$logs/peers.log" | sed -E 's/ \(.*\)//; s/: .*: /: /' | tr '\n' ';' | cut -c1-200)
  record peers "$(status_word $rc)" "${verdicts:-no verdicts}${json:+ peers.json}"
}

phase_memcheck() {
  if [[ $quick == 1 ]]; then record memcheck skipped "--quick"; return; fi
  if ! command -v compute-sanitizer >/dev/null; then record memcheck skipped "no compute-sanitizer"; return; fi
  if [[ $have_gpu == 0 ]]; then record memcheck skipped "no GPU"; return; fi
  local secs rc
  secs=$(phase_budget 200)
  ((secs < 20)) && { record memcheck skipped "budget spent"; return; }
  # Probe: under gVisor the sanitizer refuses the device; that is the runtime, not a finding.
  timed memcheck-probe 30 compute-sanitizer --tool memcheck "$bin/test_gpu" --gtest_filter='GpuDevice.*'
  if grep -qiE 'not supported|error 999|unable to|LibraryNotLoaded' "$logs/memcheck-probe.log" ||
    ! grep -q 'ERROR SUMMARY' "$logs/memcheck-probe.log"; then
    record memcheck skipped "the sanitizer cannot see the device here ($runtime): $(grep -m1 -iE 'error|not supported' "$logs/memcheck-probe.log" | cut -c1-80)"
    return
  fi
  secs=$(phase_budget 200)
  timed memcheck "$secs" compute-sanitizer --tool memcheck --error-exitcode 86 --print-limit 20 \
    "$bin/test_gpu" --gtest_filter='OpParity*:CudaFused*:*Twin*:*Depthwise*:*Optimizer*:GraphReplay*'
  rc=$?
  record memcheck "$(status_word $rc)" "$(grep 'ERROR SUMMARY' "$logs/memcheck.log" | tail -1) (rc $rc)"
}

if phase_bundle; then
  phase_gpu_tests
  phase_train
  phase_bench
  phase_peers
  phase_memcheck
  phase_unit
fi

files=$(find "$out" -type f | wc -l)
((files > 8)) && record out FAIL "$files files in $out: the device tool returns at most 8"
write_summary
echo
cat "$out/summary.txt"
exit $failed
