// Fused ops of the AgileNN step: quantize and attribution_stats, and their vjps
// (quantize_backward, attribution_stats_backward), over the per-element math of
// kernels/shared/agilenn_fused.h. Each computes what its reference decomposition
// (engine/autodiff/fused_vjps.h, engine/ir/ops.cpp) computes. quantize and the vjps do the
// decomposition's float operations in its order, so they equal it bit for bit;
// attribution_stats sums each sample's elements in one pass where the decomposition sums
// per channel first, so it agrees to rounding.
#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/shared/agilenn_fused.h"

namespace agilenn::cpu {
namespace {

// Calls fn(j) with the centroid count j as a compile-time constant for the counts the
// quantizer is used with (1 to 4 bits) and as an int64_t otherwise.
template <class F>
void with_centroid_count(int64_t j, F&& fn) {
  switch (j) {
    case 2: return fn(std::integral_constant<int64_t, 2>{});
    case 4: return fn(std::integral_constant<int64_t, 4>{});
    case 8: return fn(std::integral_constant<int64_t, 8>{});
    case 16: return fn(std::integral_constant<int64_t, 16>{});
    default: return fn(j);
  }
}

// Scratch of one value per centroid: on the stack for up to 16 centroids (the quantizer's
// 1 to 4 bits), on the heap beyond.
template <class T>
class CentroidScratch {
 public:
  explicit CentroidScratch(int64_t j)
      : heap_(static_cast<size_t>(j > kStack ? j : 0)), data_(j > kStack ? heap_.data() : stack_) {}
  CentroidScratch(const CentroidScratch&) = delete;  // data_ may point into the object
  CentroidScratch& operator=(const CentroidScratch&) = delete;
  T* data() { return data_; }

 private:
  static constexpr int64_t kStack = 16;
  T stack_[kStack];
  std::vector<T> heap_;
  T* data_;
};

// Elements [first, end) of quantize's vjp: d/dx written to dx when it is given, else each
// element's centroid terms added into acc (k: the weights' term of centroid k, j + k: the
// difference's), element by element in order. Float elements go eight at a time as lanes
// of a vector, each lane doing the scalar's operations (its own exp included), so they
// equal the one-at-a-time scalar path bit for bit.
template <class T, class J>
AGILENN_CPU_CLONES void quantize_backward_elements(const T* x, const T* c, const T* g, int64_t first, int64_t end,
                                                   J j, T* dx, T* acc) {
  int64_t i = first;
  if constexpr (std::is_same_v<T, float>) {
    constexpr int kLanes = 8;
    using Lanes [[gnu::vector_size(kLanes * sizeof(float))]] = float;
    CentroidScratch<Lanes> lanes_c(j), exps(j);
    for (int64_t k = 0; k < j; ++k) lanes_c.data()[k] = kernels::rn::filled<Lanes>(c[k]);
    for (; i + kLanes <= end; i += kLanes) {
      Lanes xl, gl;
      std::memcpy(&xl, x + i, sizeof(Lanes));
      std::memcpy(&gl, g + i, sizeof(Lanes));
      const auto add_lanes = [&](int64_t k, Lanes gp, Lanes gd) {
        if (dx) return;
        for (int lane = 0; lane < kLanes; ++lane) {
          acc[k] += gp[lane];
          acc[j + k] += -gd[lane];
        }
      };
      const Lanes d = kernels::quantize_soft_grad(xl, lanes_c.data(), j, gl, exps.data(), add_lanes);
      if (dx) std::memcpy(dx + i, &d, sizeof(Lanes));
    }
  }
  CentroidScratch<T> exps(j);
  for (; i < end; ++i) {
    const T d = kernels::quantize_soft_grad(x[i], c, j, g[i], exps.data(), [&](int64_t k, T gp, T gd) {
      if (dx) return;
      acc[k] += gp;
      acc[j + k] += -gd;
    });
    if (dx) dx[i] = d;
  }
}

template <class T, class J>
void quantize_backward_kernel(const T* x, const T* c, const T* g, int64_t n, J j, bool wrt_x, T* y) {
  if (wrt_x) {
    parallel_for(n, n * j, [&](int64_t begin, int64_t end) {
      quantize_backward_elements(x, c, g, begin, end, j, y, static_cast<T*>(nullptr));
    });
    return;
  }
  // Element k of the summed row holds the weights' term of centroid k, element j + k the
  // difference's.
  std::vector<T> terms(static_cast<size_t>(2 * j));
  reduce_row_blocks(
      n, 2 * int64_t{j}, n * j, T(0), [](T a, T b) { return a + b; },
      [&](T* acc, int64_t first, int64_t end) {
        quantize_backward_elements(x, c, g, first, end, j, static_cast<T*>(nullptr), acc);
      },
      terms.data());
  for (int64_t k = 0; k < j; ++k) y[k] = terms[static_cast<size_t>(k)] + terms[static_cast<size_t>(j + k)];
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
        for (int64_t i = begin; i < end; ++i) y[i] = kernels::quantize_one(x[i], c, j);
      });
    });
  });

  // The centroids' gradient sums each term over the elements as the decomposition's
  // sum_to does (kRowBlocks blocks of elements), the weights' term first, so the two agree
  // bit for bit.
  t.add("quantize_backward", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    dispatch_float(out.dtype(), node, [&](auto tag) {
      using T = decltype(tag);
      const bool wrt_x = node.attrs.i("wrt") == 0;
      with_centroid_count(in[1].numel(), [&](auto j) {
        quantize_backward_kernel<T>(in[0].data<T>(), in[1].data<T>(), in[2].data<T>(), in[0].numel(), j, wrt_x,
                                    out.data<T>());
      });
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
          kernels::AttributionAcc<T> acc = kernels::attribution_init<T>();
          const T* dp = delta + s * pixels * c;
          const T* ap = a + s * pixels * c;
          for (int64_t i = 0; i < pixels * c; ++i)
            kernels::attribution_add(acc, kernels::attribution_of(dp[i], ap[i]), i % c < k);
          kernels::attribution_write(acc, y + s * 3);
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
          kernels::AttributionExtrema<T> e = kernels::attribution_extrema_init<T>();
          for (int64_t i = 0; i < pixels * c; ++i)
            kernels::attribution_extrema_add(e, kernels::attribution_of(dp[i], ap[i]), i % c < k);
          for (int64_t i = 0; i < pixels * c; ++i)
            yp[i] = kernels::attribution_grad_one(dp[i], ap[i], i % c < k, g + s * 3, e, wrt_a);
        }
      });
    });
  });
}

}  // namespace agilenn::cpu
