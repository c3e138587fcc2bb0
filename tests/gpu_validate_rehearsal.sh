#!/usr/bin/env bash
# CTest: tools/gpu-validate.sh --rehearse over a bundle made from this build tree, so the
# GPU-window script cannot rot between windows. Checks that the bundle passes its closure
# check, that every phase is reported (GPU parts skipped with a reason), that at most 8
# files land in the output folder, and that a tiny budget skips phases instead of
# overrunning. Usage: gpu_validate_rehearsal.sh BUILD_DIR
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:?usage: gpu_validate_rehearsal.sh BUILD_DIR}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/agilenn-rehearsal.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() { echo "rehearsal: $*"; cat "$tmp"/out*/summary.txt 2>/dev/null; exit 1; }

"$root/tools/gpu-bundle.sh" --no-build --build-dir "$build" --out "$tmp" --unpacked
bundle="$tmp/agilenn-gpu-bundle"

"$root/tools/gpu-validate.sh" --rehearse --bundle "$bundle" --out "$tmp/out" --budget 300 ||
  fail "the rehearsal reported a failure"
summary="$tmp/out/summary.txt"
for phase in bundle gpu-tests train bench peers memcheck unit; do
  grep -qE "^$phase +(ok|skipped) " "$summary" || fail "phase $phase missing or failed"
done
grep -qE '^train +skipped +no GPU; two CPU runs .*first loss rel 0\.0e\+00' "$summary" ||
  fail "the run comparison did not find two identical CPU runs identical"
files=$(find "$tmp/out" -type f | wc -l)
((files <= 8)) || fail "$files files in the output folder; the device tool returns at most 8"

# A budget too small for any phase: every phase says so, and the summary still comes back.
"$root/tools/gpu-validate.sh" --rehearse --bundle "$bundle" --out "$tmp/out-short" --budget 10 ||
  fail "a short budget made the script fail"
grep -qE '^gpu-tests +skipped +budget spent' "$tmp/out-short/summary.txt" || fail "a spent budget was not reported"
echo "rehearsal: ok ($files files)"
