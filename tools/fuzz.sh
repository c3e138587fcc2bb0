#!/usr/bin/env bash
# Fuzzes every reader of untrusted files with libFuzzer under AddressSanitizer and
# UndefinedBehaviorSanitizer (clang; the whole library instrumented, in build-fuzz/).
#   tools/fuzz.sh [RUNS]        each target for RUNS executions (default 1000000) from its
#                               seed corpus; a table row per target in build-fuzz/results.md
#   FUZZ_SECONDS=N tools/fuzz.sh  each target for N seconds instead (the CI gate)
# Exits non-zero on any finding (crash, leak, undefined behaviour, an exception other than
# agilenn::Error, an allocation past 2 GiB); the reproducer is left in build-fuzz/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${FUZZ_BUILD:-"$root/build-fuzz"}
runs=${1:-1000000}
targets=(idx cifar svhn tiny_imagenet checkpoint)
CC=clang CXX=clang++ "$root/tools/build.sh" "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAGILENN_CUDA=OFF \
  -DAGILENN_FUZZ=ON -DAGILENN_BUILD_TESTS=OFF -DAGILENN_BUILD_BENCH=OFF

seeds="$build/seeds"
rm -rf "$seeds"
"$build/tests/fuzz/fuzz_seeds" "$seeds"
# The Tiny-ImageNet seed: its two text files, then a 64×64 JPEG (Pillow; without it the
# text alone), cut as fuzz::split cuts.
python3 - "$seeds/tiny_imagenet" <<'PY'
import io, sys, pathlib
d = pathlib.Path(sys.argv[1])
text = (d / "text").read_bytes()
jpeg = io.BytesIO()
try:
    from PIL import Image
    Image.new("RGB", (64, 64), (10, 120, 200)).save(jpeg, format="JPEG", quality=50)
except ImportError:
    print("fuzz: no Pillow, the Tiny-ImageNet seed has no JPEG", file=sys.stderr)
(d / "text").unlink()
(d / "val").write_bytes(len(text).to_bytes(2, "big") + text + jpeg.getvalue())
PY

results="$build/results.md"
echo "| target | executions | seconds | coverage (cov / ft) | corpus | findings |" > "$results"
echo "|---|---|---|---|---|---|" >> "$results"
status=0
for t in "${targets[@]}"; do
  corpus="$build/corpus/$t"
  mkdir -p "$corpus"
  cp -n "$seeds/$t"/* "$corpus"/ 2>/dev/null || true
  limit=(-runs="$runs")
  [[ -n "${FUZZ_SECONDS:-}" ]] && limit=(-max_total_time="$FUZZ_SECONDS")
  log="$build/$t.log"
  start=$(date +%s)
  rc=0
  # Inputs that once found a bug (tests/fuzz/regressions) are replayed every run.
  extra=()
  [[ -d "$root/tests/fuzz/regressions/$t" ]] && extra=("$root/tests/fuzz/regressions/$t")
  (cd "$build" && "$build/tests/fuzz/fuzz_$t" "${limit[@]}" -rss_limit_mb=2048 -malloc_limit_mb=2048 -max_len=16384 \
     -print_final_stats=1 "$corpus" "${extra[@]}" >"$log" 2>&1) || rc=$?
  secs=$(( $(date +%s) - start ))
  execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo "?")
  cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1 | sed 's/cov: //; s/ ft: / \/ /' || true)
  size=$(ls "$corpus" | wc -l)
  finding=0
  [[ $rc -ne 0 ]] && finding="1 (exit $rc, see $log)" && status=1
  echo "| $t | $execs | $secs | $cov | $size | $finding |" >> "$results"
  echo "fuzz: $t: $execs executions in ${secs}s, cov/ft $cov, corpus $size, findings $finding"
done
exit $status
