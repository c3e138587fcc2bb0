// Per-element math of the fused AgileNN ops (quantize, attribution_stats and their vjps),
// over one precision T: the CPU backend (kernels/cpu/agilenn_fused.cpp, float and double)
// and the CUDA kernels (kernels/cuda/agilenn_fused.cu, float) call these functions. Those
// of quantize and the vjps do the float operations of the op's reference decomposition in
// its order, so the CPU backend equals the decomposition bit for bit there (the forward
// attribution_stats sums in another order, to rounding). A GPU result differs from the
// CPU's only in how sums over elements are ordered and, where exp is called, by the
// device expf's last-ulp differences from the host's.
#pragma once

#include <math.h>

#include <cstdint>

#include "kernels/shared/rounding.h"

namespace agilenn::kernels {

// quantize: the centroid of c[0..j) nearest x by squared distance; the first wins ties.
template <class T>
AGILENN_HD T quantize_one(T x, const T* c, int64_t j) {
  int64_t best = 0;
  T best_d = rn::mul(rn::sub(x, c[0]), rn::sub(x, c[0]));
  for (int64_t k = 1; k < j; ++k) {
    const T d = rn::mul(rn::sub(x, c[k]), rn::sub(x, c[k]));
    if (d < best_d) {
      best_d = d;
      best = k;
    }
  }
  return c[best];
}

// attribution_stats of one sample, accumulated element by element: the sum of |δ·a|
// over local channels (c < K) and over remote ones, the largest remote and the smallest
// local value. An aggregate with no constructor, so it can live in shared memory.
template <class T>
struct AttributionAcc {
  T local, remote, worst_remote, weakest_local;
};

template <class T>
AGILENN_HD AttributionAcc<T> attribution_init() {
  return AttributionAcc<T>{T(0), T(0), -T(INFINITY), T(INFINITY)};
}

// One element's attribution |δ·a|.
template <class T>
AGILENN_HD T attribution_of(T delta, T a) {
  return rn::abs(rn::mul(delta, a));
}

// Adds an element of value v; the comparisons are std::min / std::max's, so a NaN v
// leaves the extremes alone.
template <class T>
AGILENN_HD void attribution_add(AttributionAcc<T>& s, T v, bool is_local) {
  if (is_local) {
    s.local = rn::add(s.local, v);
    s.weakest_local = v < s.weakest_local ? v : s.weakest_local;
  } else {
    s.remote = rn::add(s.remote, v);
    s.worst_remote = s.worst_remote < v ? v : s.worst_remote;
  }
}

// Combines the accumulators of two disjoint parts of a sample.
template <class T>
AGILENN_HD AttributionAcc<T> attribution_merge(const AttributionAcc<T>& a, const AttributionAcc<T>& b) {
  return AttributionAcc<T>{rn::add(a.local, b.local), rn::add(a.remote, b.remote),
                        a.worst_remote < b.worst_remote ? b.worst_remote : a.worst_remote,
                        b.weakest_local < a.weakest_local ? b.weakest_local : a.weakest_local};
}

// The sample's output row [local sum, total sum, max remote - min local].
template <class T>
AGILENN_HD void attribution_write(const AttributionAcc<T>& s, T* y3) {
  y3[0] = s.local;
  y3[1] = rn::add(s.local, s.remote);
  y3[2] = rn::sub(s.worst_remote, s.weakest_local);
}

// ---- quantize_backward

// quantize's vjp at one element x with output gradient g: the soft path
// Σ_k softmax_k(-(x - c_k)²) · c_k differentiated with the operations of the
// decomposition's vjp in its order (softmax's max, sum and scaled exps, then softmax's,
// the squares' and the difference's vjps). Returns d/dx; each(k, g·p_k, gd_k) receives
// the two terms of centroid k's gradient, g·p_k (through the weights c_k) and gd_k (the
// difference's, entering negated). exp(-(x - c_k)² - max) is computed once per centroid
// into exps[0..j): the decomposition evaluates that same expression in three places, so
// keeping it changes no bit. j is an int64_t or, where the caller knows it at compile time
// (std::integral_constant), a constant: the loops then unroll. T may also be a GCC vector
// of lanes, each lane an element (with c, exps and each's terms in lanes too): every lane
// then does the scalar's operations.
template <class T, class J, class Each>
AGILENN_HD T quantize_soft_grad(T x, const T* c, J j, T g, T* exps, Each&& each) {
  T m = -rn::filled<T>(INFINITY);
  for (int64_t k = 0; k < j; ++k) {
    const T d = rn::sub(x, c[k]);
    const T z = -rn::mul(d, d);
    m = m < z ? z : m;
  }
  T s = rn::filled<T>(0);
  for (int64_t k = 0; k < j; ++k) {
    const T d = rn::sub(x, c[k]);
    exps[k] = rn::exp(rn::sub(-rn::mul(d, d), m));
    s = rn::add(s, exps[k]);
  }
  const T inv = rn::div(rn::filled<T>(1), s);
  T t = rn::filled<T>(0);
  for (int64_t k = 0; k < j; ++k) t = rn::add(t, rn::mul(rn::mul(g, c[k]), rn::mul(exps[k], inv)));
  T gx = rn::filled<T>(0);
  for (int64_t k = 0; k < j; ++k) {
    const T d = rn::sub(x, c[k]);
    const T p = rn::mul(exps[k], inv);
    const T gy = rn::mul(rn::mul(g, c[k]), p);
    const T h = rn::mul(-rn::sub(gy, rn::mul(p, t)), d);
    const T gd = rn::add(h, h);
    gx = rn::add(gx, gd);
    each(k, rn::mul(g, p), gd);
  }
  return gx;
}

// ---- attribution_stats_backward

// The largest remote and the smallest local |δ·a| of one sample, each with the number of
// elements that attain it: the decomposition's max/min vjps share the gradient equally
// among those. An aggregate with no constructor, so it can live in shared memory.
template <class T>
struct AttributionExtrema {
  T worst_remote, weakest_local;
  int64_t remote_ties, local_ties;
};

template <class T>
AGILENN_HD AttributionExtrema<T> attribution_extrema_init() {
  return AttributionExtrema<T>{-T(INFINITY), T(INFINITY), 0, 0};
}

// Adds an element of value v. A NaN v matches neither extreme and is skipped, as by the
// forward pass and by the decomposition's max/min and equal kernels.
template <class T>
AGILENN_HD void attribution_extrema_add(AttributionExtrema<T>& e, T v, bool is_local) {
  if (is_local) {
    if (v < e.weakest_local) {
      e.weakest_local = v;
      e.local_ties = 1;
    } else if (v == e.weakest_local) {
      ++e.local_ties;
    }
  } else {
    if (e.worst_remote < v) {
      e.worst_remote = v;
      e.remote_ties = 1;
    } else if (v == e.worst_remote) {
      ++e.remote_ties;
    }
  }
}

// Combines the extrema of two disjoint parts of a sample; ties add up, so the counts do
// not depend on how the sample was split.
template <class T>
AGILENN_HD AttributionExtrema<T> attribution_extrema_merge(const AttributionExtrema<T>& a,
                                                           const AttributionExtrema<T>& b) {
  AttributionExtrema<T> r = a;
  if (a.worst_remote < b.worst_remote) {
    r.worst_remote = b.worst_remote;
    r.remote_ties = b.remote_ties;
  } else if (b.worst_remote == a.worst_remote) {
    r.remote_ties = a.remote_ties + b.remote_ties;
  }
  if (b.weakest_local < a.weakest_local) {
    r.weakest_local = b.weakest_local;
    r.local_ties = b.local_ties;
  } else if (b.weakest_local == a.weakest_local) {
    r.local_ties = a.local_ties + b.local_ties;
  }
  return r;
}

// The gradient of one element w.r.t. δ (wrt_a false) or a, given the sample's row of the
// output gradient g3 = [g0, g1, g2] and its extrema. The float operations are those of
// the decomposition's vjp in its order: the max/min share (±g2·hit)/ties, plus g1 + g0
// (local) or g1 (remote), with the zeros its pads add kept so zero signs and non-finite g
// behave alike; times sign(δ·a), times the other factor.
template <class T>
AGILENN_HD T attribution_grad_one(T delta, T a, bool is_local, const T* g3, const AttributionExtrema<T>& e,
                                  bool wrt_a) {
  const T m = rn::mul(delta, a);
  const T v = rn::abs(m);
  T gi;
  if (is_local) {
    const T share = rn::div(rn::mul(-g3[2], v == e.weakest_local ? T(1) : T(0)), static_cast<T>(e.local_ties));
    gi = rn::add(rn::add(share, T(0)), rn::add(g3[1], g3[0]));
  } else {
    const T share = rn::div(rn::mul(g3[2], v == e.worst_remote ? T(1) : T(0)), static_cast<T>(e.remote_ties));
    gi = rn::add(rn::add(T(0), share), rn::add(g3[1], T(0)));
  }
  const T gm = rn::mul(gi, static_cast<T>((T(0) < m) - (m < T(0))));
  return wrt_a ? rn::mul(gm, delta) : rn::mul(gm, a);
}

}  // namespace agilenn::kernels
