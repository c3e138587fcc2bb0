// Fused ops of the AgileNN step: quantize and attribution_stats, and their vjps
// (quantize_backward, attribution_stats_backward). Each computes what its reference
// decomposition in engine/ir/ops.cpp computes, with the same float operations in the
// same order where noted (so the CPU results are bit-identical to the decomposition's).
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/cpu_kernels.h"

namespace agilenn::cpu {
namespace {

// The largest remote and smallest local |δ·a| of one sample, each with how many elements
// attain it (the decomposition's max/min vjps share the gradient among them).
template <class T>
struct Extrema {
  T worst_remote = -std::numeric_limits<T>::infinity(), weakest_local = std::numeric_limits<T>::infinity();
  int64_t remote_ties = 0, local_ties = 0;
};

template <class T>
Extrema<T> sample_extrema(const T* dp, const T* ap, int64_t pixels, int64_t c, int64_t k) {
  Extrema<T> e;
  for (int64_t p = 0; p < pixels; ++p)
    for (int64_t ch = 0; ch < c; ++ch) {
      const T v = std::abs(dp[p * c + ch] * ap[p * c + ch]);
      if (ch < k) {
        if (v < e.weakest_local) e.weakest_local = v, e.local_ties = 1;
        else if (v == e.weakest_local) ++e.local_ties;
      } else {
        if (e.worst_remote < v) e.worst_remote = v, e.remote_ties = 1;
        else if (v == e.worst_remote) ++e.remote_ties;
      }
    }
  return e;
}

// The gradient of one element, with the float operations of the decomposition's vjp in
// its order: the max/min share (g2·hit)/ties, plus the sums' g1 (and g0 on local
// channels; the decomposition adds the zeros its pads bring, kept here so zero signs and
// non-finite g propagate alike), times sign(δ·a), times the other factor.
template <class T>
T attribution_grad(T delta, T a, bool is_local, const T* g3, const Extrema<T>& e, bool wrt_a) {
  const T m = delta * a;
  const T v = std::abs(m);
  T gi;
  if (is_local) {
    const T share = (-g3[2] * T(v == e.weakest_local)) / static_cast<T>(e.local_ties);
    gi = (share + T(0)) + (g3[1] + g3[0]);
  } else {
    const T share = (g3[2] * T(v == e.worst_remote)) / static_cast<T>(e.remote_ties);
    gi = (T(0) + share) + (g3[1] + T(0));
  }
  const T gm = gi * static_cast<T>((T(0) < m) - (m < T(0)));
  return wrt_a ? gm * delta : gm * a;
}

// quantize's vjp at one element x with output gradient g: the soft path
// Σ_j softmax_j(-(x - c_j)²) · c_j differentiated with the float operations of the
// decomposition's vjp in its order (softmax's max, sum and scaled exps, then softmax's,
// the squares' and the difference's vjps). Returns d/dx; each(k, g·p_k, gd_k) receives
// the two terms of centroid k's gradient, g·p_k (through the weights c_k) and gd_k (the
// difference's, entering negated).
// The exps are computed once per centroid (each is the same expression the decomposition
// evaluates in three places, so caching them changes no bit); `scratch` holds j values.
template <class T, class Each>
T quantize_soft_grad(T x, const T* c, int64_t j, T g, T* scratch, Each&& each) {
  T m = -std::numeric_limits<T>::infinity();
  for (int64_t k = 0; k < j; ++k) m = std::max(m, -((x - c[k]) * (x - c[k])));
  T s = 0;
  for (int64_t k = 0; k < j; ++k) {
    scratch[k] = std::exp(-((x - c[k]) * (x - c[k])) - m);
    s += scratch[k];
  }
  const T inv = T(1) / s;
  T t = 0;
  for (int64_t k = 0; k < j; ++k) t += (g * c[k]) * (scratch[k] * inv);
  T gx = 0;
  for (int64_t k = 0; k < j; ++k) {
    const T d = x - c[k];
    const T p = scratch[k] * inv;
    const T gy = (g * c[k]) * p;
    const T h = -(gy - p * t) * d;
    const T gd = h + h;
    gx += gd;
    each(k, g * p, gd);
  }
  return gx;
}

}  // namespace

void register_agilenn_fused(KernelTable& t) {
  t.add("quantize", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    dispatch_float(out.dtype(), node, [&](auto tag) {
      using T = decltype(tag);
      const T* x = in[0].data<T>();
      const T* c = in[1].data<T>();
      const int64_t j = in[1].numel(), n = out.numel();
      T* y = out.data<T>();
      parallel_for(n, n * j, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          int64_t best = 0;
          T best_d = (x[i] - c[0]) * (x[i] - c[0]);
          for (int64_t k = 1; k < j; ++k) {
            const T d = (x[i] - c[k]) * (x[i] - c[k]);
            if (d < best_d) best_d = d, best = k;
          }
          y[i] = c[best];
        }
      });
    });
  });

  // The centroids' gradient sums each term over the elements as the decomposition's
  // sum_to does (the CPU sum over leading axes: 16 row blocks, each summed in order, then
  // the blocks in order), the weights' term first, so the two agree bit for bit.
  t.add("quantize_backward", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    dispatch_float(out.dtype(), node, [&](auto tag) {
      using T = decltype(tag);
      const T* x = in[0].data<T>();
      const T* c = in[1].data<T>();
      const T* g = in[2].data<T>();
      const int64_t j = in[1].numel(), n = in[0].numel();
      T* y = out.data<T>();
      const auto ignore = [](int64_t, T, T) {};
      if (node.attrs.i("wrt") == 0) {
        parallel_for(n, n * j, [&](int64_t begin, int64_t end) {
          std::vector<T> scratch(static_cast<size_t>(j));
          for (int64_t i = begin; i < end; ++i) y[i] = quantize_soft_grad(x[i], c, j, g[i], scratch.data(), ignore);
        });
        return;
      }
      const int64_t blocks = std::min<int64_t>(n, 16);
      std::vector<T> weights(static_cast<size_t>(blocks * j), T(0)), diffs(weights.size(), T(0));
      parallel_for(blocks, n * j, [&](int64_t begin, int64_t end) {
        std::vector<T> scratch(static_cast<size_t>(j));
        for (int64_t b = begin; b < end; ++b) {
          T* wb = weights.data() + b * j;
          T* db = diffs.data() + b * j;
          for (int64_t i = n * b / blocks; i < n * (b + 1) / blocks; ++i)
            quantize_soft_grad(x[i], c, j, g[i], scratch.data(), [&](int64_t k, T gp, T gd) {
              wb[k] += gp;
              db[k] += -gd;
            });
        }
      });
      for (int64_t k = 0; k < j; ++k) {
        T w = 0, d = 0;
        for (int64_t b = 0; b < blocks; ++b) {
          w += weights[static_cast<size_t>(b * j + k)];
          d += diffs[static_cast<size_t>(b * j + k)];
        }
        y[k] = w + d;
      }
    });
  });

  t.add("attribution_stats", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    dispatch_float(out.dtype(), node, [&](auto tag) {
      using T = decltype(tag);
      const int64_t b = in[0].dim(0), pixels = in[0].dim(1) * in[0].dim(2), c = in[0].dim(3);
      const int64_t k = node.attrs.i("local_channels");
      const T* delta = in[0].data<T>();
      const T* a = in[1].data<T>();
      T* y = out.data<T>();
      parallel_for(b, b * pixels * c, [&](int64_t begin, int64_t end) {
        for (int64_t s = begin; s < end; ++s) {
          T local = 0, remote = 0;
          T worst_remote = -std::numeric_limits<T>::infinity(), weakest_local = std::numeric_limits<T>::infinity();
          const T* dp = delta + s * pixels * c;
          const T* ap = a + s * pixels * c;
          for (int64_t p = 0; p < pixels; ++p) {
            for (int64_t ch = 0; ch < k; ++ch) {
              const T v = std::abs(dp[p * c + ch] * ap[p * c + ch]);
              local += v;
              weakest_local = std::min(weakest_local, v);
            }
            for (int64_t ch = k; ch < c; ++ch) {
              const T v = std::abs(dp[p * c + ch] * ap[p * c + ch]);
              remote += v;
              worst_remote = std::max(worst_remote, v);
            }
          }
          y[s * 3 + 0] = local;
          y[s * 3 + 1] = local + remote;
          y[s * 3 + 2] = worst_remote - weakest_local;
        }
      });
    });
  });

  t.add("attribution_stats_backward", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    dispatch_float(out.dtype(), node, [&](auto tag) {
      using T = decltype(tag);
      const int64_t b = in[0].dim(0), pixels = in[0].dim(1) * in[0].dim(2), c = in[0].dim(3);
      const int64_t k = node.attrs.i("local_channels");
      const bool wrt_a = node.attrs.i("wrt") == 1;
      const T* delta = in[0].data<T>();
      const T* a = in[1].data<T>();
      const T* g = in[2].data<T>();
      T* y = out.data<T>();
      parallel_for(b, b * pixels * c, [&](int64_t begin, int64_t end) {
        for (int64_t s = begin; s < end; ++s) {
          const T* dp = delta + s * pixels * c;
          const T* ap = a + s * pixels * c;
          T* yp = y + s * pixels * c;
          const Extrema<T> e = sample_extrema(dp, ap, pixels, c, k);
          for (int64_t i = 0; i < pixels * c; ++i)
            yp[i] = attribution_grad(dp[i], ap[i], i % c < k, g + s * 3, e, wrt_a);
        }
      });
    });
  });
}

}  // namespace agilenn::cpu
