// Per-element math of softmax_cross_entropy, -log_softmax(x)[label] of a row, shared by
// the CPU backend (kernels/cpu/cross_entropy.cpp) and the CUDA kernel
// (kernels/cuda/cross_entropy.cu): the row's max, then Σ exp(x - max), then
// -(x[label] - (max + log Σ)), the operations of the CPU log_softmax kernel, so the fused
// op equals its decomposition bit for bit on the CPU. The CPU runs the max and the sum in
// order; the CUDA kernel splits them over a warp's lanes.
#pragma once

#include <cstdint>

#include "kernels/shared/rounding.h"

namespace agilenn::kernels {

// std::max's comparison, so a NaN x is skipped.
template <class T>
AGILENN_HD T ce_max(T m, T x) {
  return m < x ? x : m;
}

template <class T>
AGILENN_HD T ce_exp_term(T x, T m) {
  return rn::exp(rn::sub(x, m));
}

AGILENN_HD bool ce_label_ok(int32_t label, int64_t classes) { return label >= 0 && label < classes; }

// The row's loss from its label's logit, its max and its Σ exp(x - max).
template <class T>
AGILENN_HD T ce_loss(T x_label, T m, T s) {
  return -rn::sub(x_label, rn::add(m, rn::log(s)));
}

}  // namespace agilenn::kernels
