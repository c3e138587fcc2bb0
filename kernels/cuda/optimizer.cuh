// Per-element math of the fused multi-tensor optimizer updates, shared by the CUDA kernels
// (optimizer.cu) and their CPU twin (optimizer_twin.cpp).
//
// On the GPU every operation is an explicitly rounded intrinsic (__fmul_rn, __fadd_rn, ...):
// nvcc never contracts those into fused multiply-adds, and division and square root are
// the IEEE round-to-nearest ones. On the host the same expressions are plain operators,
// which GCC does not contract either in ISO C++ mode (-std=c++20 implies
// -ffp-contract=off). So the GPU computes bit for bit what the CPU backend computes.
#pragma once

#include <cmath>

#include "kernels/cuda/host_device.h"

namespace agilenn::cuda::optim {

#ifdef __CUDA_ARCH__
AGILENN_HD float add(float a, float b) { return __fadd_rn(a, b); }
AGILENN_HD float sub(float a, float b) { return __fsub_rn(a, b); }
AGILENN_HD float mul(float a, float b) { return __fmul_rn(a, b); }
AGILENN_HD float div(float a, float b) { return __fdiv_rn(a, b); }
AGILENN_HD float root(float a) { return __fsqrt_rn(a); }
AGILENN_HD double add(double a, double b) { return __dadd_rn(a, b); }
AGILENN_HD double sub(double a, double b) { return __dsub_rn(a, b); }
AGILENN_HD double mul(double a, double b) { return __dmul_rn(a, b); }
AGILENN_HD double div(double a, double b) { return __ddiv_rn(a, b); }
AGILENN_HD double root(double a) { return __dsqrt_rn(a); }
template <class T>
AGILENN_HD bool finite(T x) {
  return isfinite(x);
}
#else
template <class T>
AGILENN_HD T add(T a, T b) {
  return a + b;
}
template <class T>
AGILENN_HD T sub(T a, T b) {
  return a - b;
}
template <class T>
AGILENN_HD T mul(T a, T b) {
  return a * b;
}
template <class T>
AGILENN_HD T div(T a, T b) {
  return a / b;
}
template <class T>
AGILENN_HD T root(T a) {
  return std::sqrt(a);
}
template <class T>
AGILENN_HD bool finite(T x) {
  return std::isfinite(x);
}
#endif

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
