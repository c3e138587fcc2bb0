#!/usr/bin/env bash
# Run on the development machine before a GPU validation run: downloads, as .deb files
# into .gpu-deps/ (ignored by git, carried to the GPU machine), the Debian build
# dependencies that the GPU machine's image lacks and cannot fetch there (it has no
# network). tools/gpu-validate.sh unpacks them into a private prefix.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/.gpu-deps/debs"
packages=(
  libopenblas-pthread-dev libopenblas0-pthread libgfortran5 libquadmath0
  libgtest-dev libgmock-dev libbenchmark-dev libbenchmark1debian
  libcli11-dev nlohmann-json3-dev libjpeg62-turbo-dev libjpeg62-turbo zlib1g-dev zlib1g
)
mkdir -p "$dest"
cd "$dest"
rm -f ./*.deb
apt-get download "${packages[@]}" >/dev/null
du -sh "$dest"
