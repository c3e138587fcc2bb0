// Fused ops of the AgileNN step: quantize and attribution_stats (forward passes; their
// derivatives come from the reference decompositions in engine/ir/ops.cpp).
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/cpu/cpu_kernels.h"

namespace agilenn::cpu {

void register_agilenn_fused(KernelTable& t) {
  t.add("quantize", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    dispatch_float(out.dtype(), node, [&](auto tag) {
      using T = decltype(tag);
      const T* x = in[0].data<T>();
      const T* c = in[1].data<T>();
      const int64_t j = in[1].numel(), n = out.numel();
      T* y = out.data<T>();
#pragma omp parallel for schedule(static) if (n * j > kParallelGrain)
      for (int64_t i = 0; i < n; ++i) {
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

  t.add("attribution_stats", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    dispatch_float(out.dtype(), node, [&](auto tag) {
      using T = decltype(tag);
      const int64_t b = in[0].dim(0), pixels = in[0].dim(1) * in[0].dim(2), c = in[0].dim(3);
      const int64_t k = node.attrs.i("local_channels");
      const T* delta = in[0].data<T>();
      const T* a = in[1].data<T>();
      T* y = out.data<T>();
#pragma omp parallel for schedule(static) if (b > 1 && b * pixels * c > kParallelGrain)
      for (int64_t s = 0; s < b; ++s) {
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
}

}  // namespace agilenn::cpu
