#!/usr/bin/env bash
# Builds here, for a GPU machine there: a Release build for sm_90 packed as a relocatable
# bundle that tools/gpu-validate.sh runs without compiling anything on the GPU machine.
#
#   bin/  test_gpu, test_unit, agilenn-train, agilenn-bench, agilenn-peer-reference
#         (stripped, RPATH $ORIGIN/../lib)
#   lib/  the non-system runtime libraries they need (OpenBLAS, libgfortran,
#         libjpeg, Google Benchmark, the CUDA runtime); cuBLAS and cuDNN are NOT shipped:
#         they come from the GPU machine's toolkit or its nvidia-* Python packages.
#   MANIFEST  commit, toolkit and cuDNN versions built against, sha256 of every file.
#
# The bundle is one compressed tarball (the libraries dominate and compress well), so it
# travels far under the device tool's 64 MiB carry limit. Usage:
#   tools/gpu-bundle.sh [--build-dir DIR] [--out DIR] [--no-build] [--unpacked]
# Default: build in build/, write .gpu-bundle/agilenn-gpu-bundle.tar.xz (ignored by git;
# carry .gpu-bundle with the device call). --unpacked writes the folder
# OUT/agilenn-gpu-bundle instead (the rehearsal test uses it: no compression).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build="$root/build" out="$root/.gpu-bundle" do_build=1 unpacked=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --build-dir) build=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --no-build) do_build=0; shift ;;
    --unpacked) unpacked=1; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "gpu-bundle: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

binaries=(tests/test_gpu tests/test_unit apps/agilenn-train bench/agilenn-bench bench/agilenn-peer-reference)
# Found on every Linux the bundle may run on (glibc, the C++ runtime), or on the GPU machine
# by design (cuBLAS, cuDNN and NCCL, from its nvidia-* Python packages: ours would be far
# over the carry limit; NCCL alone is 218 MB).
system_libs='^(ld-linux-x86-64|linux-vdso|libc|libm|libdl|libpthread|librt|libstdc\+\+|libgcc_s)\.so'
device_libs='^(libcublas|libcublasLt|libcudnn|libnccl)\.so'

command -v patchelf >/dev/null || { echo "gpu-bundle: patchelf missing (tools/setup.sh installs it)" >&2; exit 1; }
if [[ $do_build == 1 ]]; then
  "$root/tools/build.sh" "$build"
fi
[[ -x "$build/tests/test_gpu" ]] ||
  { echo "gpu-bundle: $build is not a CUDA build (no tests/test_gpu: no nvcc at configure time?)" >&2; exit 1; }
for b in "${binaries[@]}"; do
  [[ -x "$build/$b" ]] || { echo "gpu-bundle: $build/$b not built" >&2; exit 1; }
done

stage=$(mktemp -d "${TMPDIR:-/tmp}/agilenn-bundle.XXXXXX")
trap 'rm -rf "$stage"' EXIT
pkg="$stage/agilenn-gpu-bundle"
mkdir -p "$pkg/bin" "$pkg/lib"

# Every library a binary loads, by soname and resolved path, as the loader here sees it.
declare -A shipped=()
for b in "${binaries[@]}"; do
  cp "$build/$b" "$pkg/bin/"
  while read -r soname _ path _; do
    [[ -z "$path" || "$path" == "not" ]] && { echo "gpu-bundle: $b: $soname not found here" >&2; exit 1; }
    if [[ "$soname" =~ $system_libs || "$soname" =~ $device_libs ]]; then continue; fi
    if [[ -z "${shipped[$soname]:-}" ]]; then
      cp -L "$path" "$pkg/lib/$soname"
      shipped[$soname]=$path
    fi
  done < <(ldd "$build/$b" | awk '/=>/ {print $1, $2, $3, $4}')
done
strip --strip-unneeded "$pkg"/bin/* 2>/dev/null || true
for f in "$pkg"/bin/* "$pkg"/lib/*; do
  patchelf --set-rpath '$ORIGIN/../lib' "$f"
done

cudnn_header=$(grep -l CUDNN_MAJOR "$(sed -n 's/^CUDNN_INCLUDE_DIR:PATH=//p' "$build/CMakeCache.txt")/cudnn_version.h" 2>/dev/null || true)
cudnn_version=unknown
[[ -n "$cudnn_header" ]] &&
  cudnn_version=$(awk '/define CUDNN_(MAJOR|MINOR|PATCHLEVEL) /{v=v (v?".":"") $3} END{print v}' "$cudnn_header")
{
  echo "commit: $(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown)"
  echo "built: $(date -u +%FT%TZ) on $(uname -m), $(g++ --version | head -1)"
  echo "cuda: $(sed -n 's/set(CMAKE_CUDA_COMPILER_VERSION "\(.*\)")/\1/p' "$build"/CMakeFiles/*/CMakeCUDACompiler.cmake)"
  echo "cudnn built against: $cudnn_version (the GPU machine needs this minor or newer)"
  echo "architectures: sm_90 + compute_90 PTX"
  echo "from the GPU machine: libcublas.so.13, libcublasLt.so.13, libcudnn.so.9, libnccl.so.2 and the CUDA driver"
  echo "files:"
  (cd "$pkg" && find bin lib -type f | sort | xargs sha256sum)
} >"$pkg/MANIFEST"

"$root/tools/gpu-bundle-check.sh" "$pkg"

mkdir -p "$out"
if [[ $unpacked == 1 ]]; then
  rm -rf "$out/agilenn-gpu-bundle"
  mv "$pkg" "$out/agilenn-gpu-bundle"
  echo "gpu-bundle: $out/agilenn-gpu-bundle ($(du -sh "$out/agilenn-gpu-bundle" | cut -f1))"
  exit 0
fi
tarball="$out/agilenn-gpu-bundle.tar.xz"
tar -C "$stage" -cf - agilenn-gpu-bundle | xz -T2 -6 >"$tarball.tmp"
mv "$tarball.tmp" "$tarball"
echo "gpu-bundle: $tarball ($(du -h "$tarball" | cut -f1); unpacked $(du -sh "$pkg" | cut -f1))"
