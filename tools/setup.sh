#!/usr/bin/env bash
# Installs what agilenn needs from Debian's packages (only what is missing), and the Python
# packages the tests read our files back with; `--export` adds onnxruntime and LiteRT for
# tools/verify-export.py, `--tests` those and PyTorch for the import tests.
# The CUDA toolkit, cuDNN, cuBLAS and NCCL come with the machine when it has them;
# without nvcc the project builds CPU-only.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config patchelf xz-utils clang libclang-rt-14-dev
  libopenblas-dev libomp-dev
  googletest libgtest-dev libgmock-dev libbenchmark-dev
  libcli11-dev nlohmann-json3-dev zlib1g-dev libjpeg-dev libpng-dev libonnx-dev libprotobuf-dev libssl-dev
  libflatbuffers-dev
  libopenmpi-dev openmpi-bin
  gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm
  dataset-fashion-mnist
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all packages present"
fi

# Tests read our files back with the reference readers: safetensors (checkpoints),
# tensorboard's event accumulator (event files) and Pillow (PNG figures).
if ! python3 -c 'import safetensors, numpy, tensorboard, PIL' >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check safetensors numpy tensorboard pillow ||
    echo "setup: safetensors, tensorboard or Pillow unavailable; the tests that need them will skip"
fi
# With --tests (tools/test.sh): the import of pretrained EfficientNetV2-S weights is tested
# against torchvision's own net and forward (a large download, once: PyTorch's wheels).
if [[ ${1:-} == --tests ]] && ! python3 -c 'import torch, torchvision' >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check torch torchvision ||
    echo "setup: torch or torchvision unavailable; the import tests will skip"
fi
# tools/verify-export.py (run by the main job, `--export`, and by the tests) runs exported
# models in their runtimes: the float halves in onnxruntime, the int8 device half in LiteRT's
# interpreter.
if [[ ${1:-} == --tests || ${1:-} == --export ]] && ! python3 -c 'import onnxruntime, ai_edge_litert' >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check onnxruntime ai-edge-litert ||
    echo "setup: onnxruntime or ai-edge-litert unavailable; the export's runtime test will skip"
fi
