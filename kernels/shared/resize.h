// Per-element math of bilinear resize, which the CPU backend (kernels/cpu/indexing.cpp)
// and the CUDA kernel (kernels/cuda/indexing.cu) share, so both pick the same taps and
// weights.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/shared/rounding.h"

namespace agilenn::kernels {

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

// a + (b − a)·t with each operation rounded on its own (no fused multiply-add).
template <class T>
AGILENN_HD T lerp_rounded(T a, T b, T t) {
  return rn::add(a, rn::mul(rn::sub(b, a), t));
}

// The output value from the four source pixels around it: along x (fx), then along y.
template <class T>
AGILENN_HD T bilinear(T p00, T p01, T p10, T p11, T fx, T fy) {
  return lerp_rounded(lerp_rounded(p00, p01, fx), lerp_rounded(p10, p11, fx), fy);
}

}  // namespace agilenn::kernels
