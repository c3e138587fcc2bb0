// Per-element math of the fused multi-tensor optimizer updates, shared by the CUDA kernels
// (optimizer.cu) and their CPU twin (optimizer_twin.cpp).
// Every operation is an explicitly rounded one (rounding.cuh), so the GPU computes bit for
// bit what the CPU backend computes.
#pragma once

#include <cmath>

#include "kernels/cuda/host_device.h"
#include "kernels/cuda/rounding.cuh"

namespace agilenn::cuda::optim {

using rn::add;
using rn::div;
using rn::finite;
using rn::mul;
using rn::root;
using rn::sub;

// SGDW with decoupled weight decay, one element:
//   v ← μ·v − lr·g;   θ ← (θ − decay·θ) + v.
template <class T>
AGILENN_HD void sgdw_step(T& theta, T& velocity, T g, T lr, T decay, T momentum) {
  velocity = sub(mul(momentum, velocity), mul(lr, g));
  theta = add(sub(theta, mul(decay, theta)), velocity);
}

// Adam, one element, with the bias corrections folded into `step` on the host:
//   m ← β1·m + (1−β1)·g;   v ← β2·v + ((1−β2)·g)·g;   θ ← θ − (step·m) / (√v + eps).
template <class T>
AGILENN_HD void adam_step(T& theta, T& m, T& v, T g, T step, T beta1, T beta2, T eps) {
  m = add(mul(beta1, m), mul(sub(T(1), beta1), g));
  v = add(mul(beta2, v), mul(mul(sub(T(1), beta2), g), g));
  theta = sub(theta, div(mul(step, m), add(root(v), eps)));
}

}  // namespace agilenn::cuda::optim
