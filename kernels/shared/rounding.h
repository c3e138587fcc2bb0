// Explicitly rounded float and double operations for the shared per-element math. On the
// GPU each is a round-to-nearest intrinsic (__fadd_rn, __fmul_rn, ...): nvcc never
// contracts those into fused multiply-adds, and division and square root are the IEEE
// ones. On the host they are plain operators, and the build passes -ffp-contract=off
// (CMakeLists.txt), so no compiler fuses them either. So the CPU backend and a CUDA kernel
// round alike. The math functions are overloaded per precision, so a template calls expf for
// float on both sides (the host's std::exp(float) is the same expf).
#pragma once

#include <math.h>

#include <cmath>

#include "kernels/shared/host_device.h"

namespace agilenn::kernels::rn {

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

AGILENN_HD float exp(float x) { return expf(x); }
AGILENN_HD double exp(double x) { return ::exp(x); }
AGILENN_HD float log(float x) { return logf(x); }
AGILENN_HD double log(double x) { return ::log(x); }
AGILENN_HD float tanh(float x) { return tanhf(x); }
AGILENN_HD double tanh(double x) { return ::tanh(x); }
AGILENN_HD float abs(float x) { return fabsf(x); }
AGILENN_HD double abs(double x) { return fabs(x); }

}  // namespace agilenn::kernels::rn
