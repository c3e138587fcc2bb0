// Per-element math of the fused AgileNN kernels, shared by the CUDA kernels
// (agilenn_fused.cu) and their CPU twins (agilenn_fused_twin.cpp). Each function does
// the same float operations in the same order as the CPU backend's kernel
// (kernels/cpu/agilenn_fused.cpp), so a twin matches it (bit for bit, except the
// centroids' sums of quantize_backward, which the CPU blocks as its sum reduction does)
// and the GPU differs from the twin only in how sums are ordered and, where expf and logf
// are called, by their last-ulp differences from the host's.
#pragma once

#include <math.h>

#include <cstdint>

#include "kernels/cuda/host_device.h"
#include "kernels/cuda/rounding.cuh"

namespace agilenn::cuda {

// quantize: the centroid of c[0..j) nearest x by squared distance; the first wins ties.
AGILENN_HD float quantize_one(float x, const float* c, int64_t j) {
  int64_t best = 0;
  float best_d = (x - c[0]) * (x - c[0]);
  for (int64_t k = 1; k < j; ++k) {
    const float d = (x - c[k]) * (x - c[k]);
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
struct AttributionAcc {
  float local, remote, worst_remote, weakest_local;
};

AGILENN_HD AttributionAcc attribution_init() { return AttributionAcc{0.0f, 0.0f, -INFINITY, INFINITY}; }

// One element's attribution |δ·a|.
AGILENN_HD float attribution_of(float delta, float a) { return fabsf(delta * a); }

// Adds an element of value v; the comparisons are std::min / std::max's, so a NaN v
// leaves the extremes alone exactly as on the CPU.
AGILENN_HD void attribution_add(AttributionAcc& s, float v, bool is_local) {
  if (is_local) {
    s.local += v;
    s.weakest_local = v < s.weakest_local ? v : s.weakest_local;
  } else {
    s.remote += v;
    s.worst_remote = s.worst_remote < v ? v : s.worst_remote;
  }
}

// Combines the accumulators of two disjoint parts of a sample.
AGILENN_HD AttributionAcc attribution_merge(const AttributionAcc& a, const AttributionAcc& b) {
  return AttributionAcc{a.local + b.local, a.remote + b.remote,
                        a.worst_remote < b.worst_remote ? b.worst_remote : a.worst_remote,
                        b.weakest_local < a.weakest_local ? b.weakest_local : a.weakest_local};
}

// The sample's output row [local sum, total sum, max remote - min local].
AGILENN_HD void attribution_write(const AttributionAcc& s, float* y3) {
  y3[0] = s.local;
  y3[1] = s.local + s.remote;
  y3[2] = s.worst_remote - s.weakest_local;
}

// ---- quantize_backward

// quantize's vjp at one element x with output gradient g: the soft path
// Σ_k softmax_k(-(x - c_k)²) · c_k differentiated as the decomposition's vjp does it, in
// the order of the CPU kernel (kernels/cpu/agilenn_fused.cpp). Returns d/dx; each(k, v)
// receives v = g·p_k - gd_k, centroid k's gradient from this element.
template <class Each>
AGILENN_HD float quantize_soft_grad(float x, const float* c, int64_t j, float g, Each&& each) {
  float m = -INFINITY;
  for (int64_t k = 0; k < j; ++k) {
    const float d = rn::sub(x, c[k]);
    const float z = -rn::mul(d, d);
    m = m < z ? z : m;
  }
  float s = 0.0f;
  for (int64_t k = 0; k < j; ++k) {
    const float d = rn::sub(x, c[k]);
    s = rn::add(s, expf(rn::sub(-rn::mul(d, d), m)));
  }
  const float inv = 1.0f / s;
  float t = 0.0f;
  for (int64_t k = 0; k < j; ++k) {
    const float d = rn::sub(x, c[k]);
    t = rn::add(t, rn::mul(rn::mul(g, c[k]), rn::mul(expf(rn::sub(-rn::mul(d, d), m)), inv)));
  }
  float gx = 0.0f;
  for (int64_t k = 0; k < j; ++k) {
    const float d = rn::sub(x, c[k]);
    const float p = rn::mul(expf(rn::sub(-rn::mul(d, d), m)), inv);
    const float gy = rn::mul(rn::mul(g, c[k]), p);
    const float h = rn::mul(-rn::sub(gy, rn::mul(p, t)), d);
    const float gd = rn::add(h, h);
    gx = rn::add(gx, gd);
    each(k, rn::sub(rn::mul(g, p), gd));
  }
  return gx;
}

// ---- attribution_stats_backward

// The largest remote and the smallest local |δ·a| of one sample, each with the number of
// elements that attain it: the decomposition's max/min vjps share the gradient equally
// among those. An aggregate with no constructor, so it can live in shared memory.
struct AttributionExtrema {
  float worst_remote, weakest_local;
  int64_t remote_ties, local_ties;
};

AGILENN_HD AttributionExtrema attribution_extrema_init() {
  return AttributionExtrema{-INFINITY, INFINITY, 0, 0};
}

// Adds an element of value v. A NaN v matches neither extreme and is skipped, as by the
// forward pass and by the decomposition's max/min and equal kernels.
AGILENN_HD void attribution_extrema_add(AttributionExtrema& e, float v, bool is_local) {
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
AGILENN_HD AttributionExtrema attribution_extrema_merge(const AttributionExtrema& a, const AttributionExtrema& b) {
  AttributionExtrema r = a;
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
// the decomposition's vjp in its order (kernels/cpu/agilenn_fused.cpp does the same):
// the max/min share (±g2·hit)/ties, plus g1 + g0 (local) or g1 (remote), with the zeros
// its pads add kept so zero signs and non-finite g behave alike; times sign(δ·a), times
// the other factor.
AGILENN_HD float attribution_grad_one(float delta, float a, bool is_local, const float* g3,
                                      const AttributionExtrema& e, bool wrt_a) {
  const float m = delta * a;
  const float v = fabsf(m);
  float gi;
  if (is_local) {
    const float share = (-g3[2] * (v == e.weakest_local ? 1.0f : 0.0f)) / static_cast<float>(e.local_ties);
    gi = (share + 0.0f) + (g3[1] + g3[0]);
  } else {
    const float share = (g3[2] * (v == e.worst_remote ? 1.0f : 0.0f)) / static_cast<float>(e.remote_ties);
    gi = (0.0f + share) + (g3[1] + 0.0f);
  }
  const float gm = gi * static_cast<float>((0.0f < m) - (m < 0.0f));
  return wrt_a ? gm * delta : gm * a;
}

}  // namespace agilenn::cuda
