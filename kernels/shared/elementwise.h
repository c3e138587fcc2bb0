// Per-element math of the elementwise ops, as functors over one precision T: the CPU
// backend (kernels/cpu/elementwise.cpp, float and double) and the CUDA kernels
// (kernels/cuda/elementwise.cu, float) apply the same ones, so the formulas and the tie
// and NaN rules are written once.
#pragma once

#include "kernels/shared/rounding.h"

namespace agilenn::kernels {

struct Neg {
  template <class T>
  AGILENN_HD T operator()(T x) const { return -x; }
};
struct Abs {
  template <class T>
  AGILENN_HD T operator()(T x) const { return rn::abs(x); }
};
struct Sign {
  template <class T>
  AGILENN_HD T operator()(T x) const { return static_cast<T>((T(0) < x) - (x < T(0))); }
};
struct Exp {
  template <class T>
  AGILENN_HD T operator()(T x) const { return rn::exp(x); }
};
struct Log {
  template <class T>
  AGILENN_HD T operator()(T x) const { return rn::log(x); }
};
struct Sqrt {
  template <class T>
  AGILENN_HD T operator()(T x) const { return rn::root(x); }
};
// 1/sqrt rather than the GPU's rsqrtf: both steps are correctly rounded, so every backend
// gets the same bits.
struct Rsqrt {
  template <class T>
  AGILENN_HD T operator()(T x) const { return rn::div(T(1), rn::root(x)); }
};
// Split by sign so exp never overflows.
struct Sigmoid {
  template <class T>
  AGILENN_HD T operator()(T x) const {
    if (x >= T(0)) return rn::div(T(1), rn::add(T(1), rn::exp(-x)));
    const T e = rn::exp(x);
    return rn::div(e, rn::add(T(1), e));
  }
};
struct Tanh {
  template <class T>
  AGILENN_HD T operator()(T x) const { return rn::tanh(x); }
};
struct Identity {
  template <class T>
  AGILENN_HD T operator()(T x) const { return x; }
};

// clamp and its vjp carry their range [lo, hi] (attributes of the node).
template <class T>
struct Clamp {
  T lo, hi;
  AGILENN_HD T operator()(T x) const { return x < lo ? lo : (x > hi ? hi : x); }
};
template <class T>
struct ClampGrad {
  T lo, hi;
  AGILENN_HD T operator()(T x, T g) const { return x < lo || x > hi ? T(0) : g; }
};

struct Add {
  template <class T>
  AGILENN_HD T operator()(T a, T b) const { return rn::add(a, b); }
};
struct Sub {
  template <class T>
  AGILENN_HD T operator()(T a, T b) const { return rn::sub(a, b); }
};
struct Mul {
  template <class T>
  AGILENN_HD T operator()(T a, T b) const { return rn::mul(a, b); }
};
struct Div {
  template <class T>
  AGILENN_HD T operator()(T a, T b) const { return rn::div(a, b); }
};
// Ties go to a; a comparison with a NaN is false, so a NaN in either operand gives b.
struct Maximum {
  template <class T>
  AGILENN_HD T operator()(T a, T b) const { return a >= b ? a : b; }
};
struct Minimum {
  template <class T>
  AGILENN_HD T operator()(T a, T b) const { return a <= b ? a : b; }
};

// Comparisons take any dtype; the result becomes a u8 mask.
struct Equal {
  template <class T>
  AGILENN_HD bool operator()(T a, T b) const { return a == b; }
};
struct Less {
  template <class T>
  AGILENN_HD bool operator()(T a, T b) const { return a < b; }
};
struct LessEqual {
  template <class T>
  AGILENN_HD bool operator()(T a, T b) const { return a <= b; }
};
struct Greater {
  template <class T>
  AGILENN_HD bool operator()(T a, T b) const { return a > b; }
};
struct GreaterEqual {
  template <class T>
  AGILENN_HD bool operator()(T a, T b) const { return a >= b; }
};

}  // namespace agilenn::kernels
