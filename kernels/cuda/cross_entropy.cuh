// Per-element math of the softmax_cross_entropy kernel (cross_entropy.cu), shared with its
// CPU twin (cross_entropy_twin.cpp).
#pragma once

#include <math.h>

#include <cstdint>

#include "kernels/cuda/host_device.h"
#include "kernels/cuda/rounding.cuh"

namespace agilenn::cuda {

// softmax_cross_entropy: -log_softmax(x)[label] of a row, as the CPU kernel
// (kernels/cpu/cross_entropy.cpp) computes it (max, then Σ exp(x - max), then -(x[label] - (max + log Σ))); the kernel splits the
// max and the sum over a warp's lanes, the twin runs them in order.

// std::max's comparison, so a NaN x is skipped as on the CPU.
AGILENN_HD float ce_max(float m, float x) { return m < x ? x : m; }

AGILENN_HD float ce_exp_term(float x, float m) { return expf(rn::sub(x, m)); }

AGILENN_HD bool ce_label_ok(int32_t label, int64_t classes) { return label >= 0 && label < classes; }

// The row's loss from its label's logit, its max and its Σ exp(x - max).
AGILENN_HD float ce_loss(float x_label, float m, float s) { return -rn::sub(x_label, rn::add(m, logf(s))); }

}  // namespace agilenn::cuda
