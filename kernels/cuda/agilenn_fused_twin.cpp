#include "kernels/cuda/agilenn_fused_twin.h"

#include "kernels/cuda/agilenn_fused.cuh"

namespace agilenn::cuda {

void quantize_twin(const float* x, int64_t n, const float* c, int64_t j, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = quantize_one(x[i], c, j);
}

void attribution_stats_twin(const float* delta, const float* a, int64_t b, int64_t pixels, int64_t channels,
                            int64_t k, float* y) {
  const int64_t per_sample = pixels * channels;
  for (int64_t s = 0; s < b; ++s) {
    AttributionAcc acc = attribution_init();
    for (int64_t i = 0; i < per_sample; ++i)
      attribution_add(acc, attribution_of(delta[s * per_sample + i], a[s * per_sample + i]), i % channels < k);
    attribution_write(acc, y + s * 3);
  }
}

void quantize_backward_twin(const float* x, int64_t n, const float* c, int64_t j, const float* g, bool wrt_c,
                            float* y) {
  if (!wrt_c) {
    for (int64_t i = 0; i < n; ++i) y[i] = quantize_soft_grad(x[i], c, j, g[i], [](int64_t, float) {});
    return;
  }
  for (int64_t k = 0; k < j; ++k) y[k] = 0.0f;
  for (int64_t i = 0; i < n; ++i) quantize_soft_grad(x[i], c, j, g[i], [&](int64_t k, float v) { y[k] += v; });
}

void attribution_stats_backward_twin(const float* delta, const float* a, const float* g, int64_t b, int64_t pixels,
                                     int64_t channels, int64_t k, bool wrt_a, float* y) {
  const int64_t per_sample = pixels * channels;
  for (int64_t s = 0; s < b; ++s) {
    const float* dp = delta + s * per_sample;
    const float* ap = a + s * per_sample;
    AttributionExtrema e = attribution_extrema_init();
    for (int64_t i = 0; i < per_sample; ++i) attribution_extrema_add(e, attribution_of(dp[i], ap[i]), i % channels < k);
    for (int64_t i = 0; i < per_sample; ++i)
      y[s * per_sample + i] = attribution_grad_one(dp[i], ap[i], i % channels < k, g + s * 3, e, wrt_a);
  }
}

}  // namespace agilenn::cuda
