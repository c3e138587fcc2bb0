#!/usr/bin/env bash
# Checks an unpacked GPU bundle (tools/gpu-bundle.sh) without the machine's library paths:
#  1. closure: every DT_NEEDED of every file in bin/ and lib/ is shipped in lib/, or is a
#     base system library (glibc, the C++ runtime), or one the GPU machine provides by
#     design (cuBLAS, cuDNN, NCCL); the CUDA driver is loaded at run time, never linked;
#  2. RPATH: with LD_LIBRARY_PATH empty, each shipped library resolves into the bundle;
#  3. the newest glibc / libstdc++ symbol versions needed, for comparison there.
# Usage: tools/gpu-bundle-check.sh BUNDLE_DIR. Exit 1 on any finding.
set -euo pipefail
pkg=${1:?usage: gpu-bundle-check.sh BUNDLE_DIR}
system_libs='^(ld-linux-x86-64|linux-vdso|libc|libm|libdl|libpthread|librt|libstdc\+\+|libgcc_s)\.so'
device_libs='^(libcublas|libcublasLt|libcudnn|libnccl)\.so'
status=0

for f in "$pkg"/bin/* "$pkg"/lib/*; do
  rpath=$(readelf -d "$f" | sed -En 's/.*\((RUNPATH|RPATH)\).*\[(.*)\]/\2/p')
  [[ "$rpath" == '$ORIGIN/../lib' ]] || { echo "bundle-check: $(basename "$f"): RUNPATH '$rpath', want \$ORIGIN/../lib"; status=1; }
  for need in $(readelf -d "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
    [[ -e "$pkg/lib/$need" || "$need" =~ $system_libs || "$need" =~ $device_libs ]] && continue
    echo "bundle-check: $(basename "$f") needs $need, which is neither shipped nor provided there"
    status=1
  done
  if [[ -x "$f" && "$f" == */bin/* ]]; then
    while read -r soname _ path _; do
      [[ "$soname" =~ $system_libs || "$soname" =~ $device_libs ]] && continue
      case "$path" in
        "$pkg"/lib/*|$(cd "$pkg" && pwd)/bin/../lib/*) ;;
        *) echo "bundle-check: $(basename "$f"): $soname resolves to '$path', outside the bundle"; status=1 ;;
      esac
    done < <(LD_LIBRARY_PATH= ldd "$f" | awk '/=>/ {print $1, $2, $3, $4}')
  fi
done

glibc=$(cat "$pkg"/bin/* "$pkg"/lib/* | strings | grep -oE '^GLIBC_[0-9]+\.[0-9]+(\.[0-9]+)?$' | sort -uV | tail -1)
glibcxx=$(cat "$pkg"/bin/* "$pkg"/lib/* | strings | grep -oE '^GLIBCXX_[0-9]+\.[0-9]+(\.[0-9]+)?$' | sort -uV | tail -1)
echo "bundle-check: newest symbol versions needed: $glibc, $glibcxx"
[[ $status == 0 ]] && echo "bundle-check: ok ($(ls "$pkg/bin" | wc -l) programs, $(ls "$pkg/lib" | wc -l) libraries; missing only what the GPU machine provides: cuBLAS, cuDNN, NCCL, the driver)"
exit $status
