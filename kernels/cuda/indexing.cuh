// Per-element math of the indexing family that the CUDA kernels (indexing.cu) and the CPU
// backend (kernels/cpu/indexing.cpp) share, so both pick the same taps and weights.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/cuda/host_device.h"

namespace agilenn {

// Bilinear resize with half-pixel centres: source = (dest + 0.5)·in/out − 0.5, clamped to
// the image, computed in the tensor's own precision (float on the GPU).
template <class T>
struct ResizeTaps {
  int64_t lo, hi;
  T frac;
};

template <class T>
AGILENN_HD ResizeTaps<T> resize_taps(int64_t dest, int64_t in_size, int64_t out_size) {
  using std::ceil;
  using std::floor;
  const T src = (static_cast<T>(dest) + T(0.5)) * static_cast<T>(in_size) / static_cast<T>(out_size) - T(0.5);
  const T fl = floor(src);
  const int64_t lo = fl < T(0) ? 0 : static_cast<int64_t>(fl);
  const int64_t up = static_cast<int64_t>(ceil(src));
  return {lo < in_size - 1 ? lo : in_size - 1, up < in_size - 1 ? up : in_size - 1, src - fl};
}

// a + (b − a)·t with each operation rounded on its own: no fused multiply-add on the GPU,
// as the CPU loop rounds it.
template <class T>
AGILENN_HD T lerp_rounded(T a, T b, T t) {
#ifdef __CUDA_ARCH__
  if constexpr (sizeof(T) == 4)
    return __fadd_rn(a, __fmul_rn(__fsub_rn(b, a), t));
  else
    return __dadd_rn(a, __dmul_rn(__dsub_rn(b, a), t));
#else
  return a + (b - a) * t;
#endif
}

}  // namespace agilenn
