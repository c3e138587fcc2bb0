// Per-element math of the multi-tensor optimizer updates: the CPU backend's
// (kernels/cpu/optimizer.cpp) and the CUDA kernels' (kernels/cuda/optimizer.cu). Every
// operation is an explicitly rounded one (rounding.h), so the GPU computes bit for bit
// what the CPU backend computes.
#pragma once

#include <cmath>

#include "kernels/shared/rounding.h"

namespace agilenn::kernels::optim {

using rn::add;
using rn::div;
using rn::finite;
using rn::mul;
using rn::root;
using rn::sub;

// SGDW with decoupled weight decay, one element, g = scale·(the gradient given):
//   v ← μ·v − lr·g;   θ ← (θ − decay·θ) + v.
template <class T>
AGILENN_HD void sgdw_step(T& theta, T& velocity, T given, T scale, T lr, T decay, T momentum) {
  const T g = mul(scale, given);
  velocity = sub(mul(momentum, velocity), mul(lr, g));
  theta = add(sub(theta, mul(decay, theta)), velocity);
}

// Adam, one element, with the bias corrections folded into `step` on the host and
// g = scale·(the gradient given):
//   m ← β1·m + (1−β1)·g;   v ← β2·v + ((1−β2)·g)·g;   θ ← θ − (step·m) / (√v + eps).
template <class T>
AGILENN_HD void adam_step(T& theta, T& m, T& v, T given, T scale, T step, T beta1, T beta2, T eps) {
  const T g = mul(scale, given);
  m = add(mul(beta1, m), mul(sub(T(1), beta1), g));
  v = add(mul(beta2, v), mul(mul(sub(T(1), beta2), g), g));
  theta = sub(theta, div(mul(step, m), add(root(v), eps)));
}

}  // namespace agilenn::kernels::optim
