// Explicitly rounded float and double operations for the shared per-element math. On the
// GPU each is a round-to-nearest intrinsic (__fadd_rn, __fmul_rn, ...): nvcc never
// contracts those into fused multiply-adds, and division and square root are the IEEE
// ones. On the host they are plain operators, and the build passes -ffp-contract=off
// (CMakeLists.txt), so no compiler fuses them either. So the CPU backend and a CUDA kernel
// round alike. The math functions are overloaded per precision, so a template calls the
// float function for float on both sides (for exp the host's own, below, and the device's
// expf: they differ in the last bit at times).
#pragma once

#include <math.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <type_traits>

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

// v as a T: for a scalar, its value; for a GCC vector of lanes (kernels/cpu's quantize
// vjp evaluates eight elements at once), its value in every lane.
template <class T>
AGILENN_HD T filled(double v) {
  if constexpr (std::is_arithmetic_v<T>) {
    return static_cast<T>(v);
  } else {
    return T{} + static_cast<std::remove_cvref_t<decltype(T{}[0])>>(v);
  }
}

#ifdef __CUDA_ARCH__
AGILENN_HD float exp(float x) { return expf(x); }
#else
template <class To, class From>
[[gnu::always_inline]] inline To converted(From x) {
  if constexpr (std::is_arithmetic_v<From>) {
    return static_cast<To>(x);
  } else {
    return __builtin_convertvector(x, To);
  }
}

// e^x for float on the host, written out rather than glibc's expf so that it vectorises and
// every lane of a vector rounds as the scalar does: F is float or a vector of floats, D and
// U the double and uint64_t lanes of as many. x is reduced in double to k·ln2 + r with
// |r| <= ln2/2; e^r is its Taylor series to r^11/11! (truncation below 7e-15 relative;
// evaluated by Estrin's scheme, which is as accurate as Horner's in double here), 2^k
// goes into the exponent bits, and the double result rounds to float once. So it returns
// the correctly rounded e^x except within about 1e-14 of a point halfway between two
// floats. Beyond [-104, 89] the float result is 0 or infinity either way; NaN stays NaN
// (both comparisons are false). Always inlined: vectors never cross a call.
template <class F, class D, class U>
[[gnu::always_inline]] inline F exp_lanes(F xf) {
  const F lo = filled<F>(-104.0), hi = filled<F>(89.0);
  const D x = converted<D>(xf < lo ? lo : (xf > hi ? hi : xf));
  const D shift = filled<D>(0x1.8p52);  // adding it rounds to an integer held in the low bits
  const D shifted = x * 0x1.71547652b82fep0 + shift;  // x / ln2
  const D k = shifted - shift;
  const D r = x - k * 0x1.62e42fefa39efp-1;  // ln2
  constexpr double kInverseFactorials[] = {1.0,        1.0,          1.0 / 2,       1.0 / 6,
                                           1.0 / 24,   1.0 / 120,    1.0 / 720,     1.0 / 5040,
                                           1.0 / 40320, 1.0 / 362880, 1.0 / 3628800, 1.0 / 39916800};
  // Estrin's scheme: pairs, then pairs of pairs by r^2, r^4, r^8. Its longest chain is 7
  // operations where Horner's is 22, so several exponentials overlap in flight.
  const D r2 = r * r, r4 = r2 * r2, r8 = r4 * r4;
  D pairs[6];
  for (int n = 0; n < 6; ++n) pairs[n] = kInverseFactorials[2 * n] + r * kInverseFactorials[2 * n + 1];
  const D quads[3] = {pairs[0] + r2 * pairs[1], pairs[2] + r2 * pairs[3], pairs[4] + r2 * pairs[5]};
  const D p = (quads[0] + r4 * quads[1]) + r8 * quads[2];
  const U two_to_k = (std::bit_cast<U>(shifted) + 1023) << 52;
  return converted<F>(p * std::bit_cast<D>(two_to_k));
}
inline float exp(float x) { return exp_lanes<float, double, uint64_t>(x); }
template <class V>
  requires(!std::is_arithmetic_v<V>)
[[gnu::always_inline]] inline V exp(V x) {
  constexpr int kLanes = sizeof(V) / sizeof(float);
  using D [[gnu::vector_size(kLanes * sizeof(double))]] = double;
  using U [[gnu::vector_size(kLanes * sizeof(uint64_t))]] = uint64_t;
  return exp_lanes<V, D, U>(x);
}
#endif
AGILENN_HD double exp(double x) { return ::exp(x); }
AGILENN_HD float log(float x) { return logf(x); }
AGILENN_HD double log(double x) { return ::log(x); }
AGILENN_HD float tanh(float x) { return tanhf(x); }
AGILENN_HD double tanh(double x) { return ::tanh(x); }
AGILENN_HD float abs(float x) { return fabsf(x); }
AGILENN_HD double abs(double x) { return fabs(x); }

}  // namespace agilenn::kernels::rn
