// CPU twins of the fused AgileNN CUDA kernels: plain loops over the same per-element
// functions (agilenn_fused.cuh) the kernels call, on host pointers. Tests hold the twins
// against the CPU backend without a GPU, and the kernels against the twins with one.
#pragma once

#include <cstdint>

namespace agilenn::cuda {

// y[i] = the centroid of c[0..j) nearest x[i] (first on ties), i < n.
void quantize_twin(const float* x, int64_t n, const float* c, int64_t j, float* y);

// delta, a: [b, pixels, channels] (NHWC with h·w = pixels); y: [b, 3] per sample
// [Σ_{c<k} |δ·a|, Σ_c |δ·a|, max_{c≥k} |δ·a| - min_{c<k} |δ·a|].
void attribution_stats_twin(const float* delta, const float* a, int64_t b, int64_t pixels, int64_t channels,
                            int64_t k, float* y);

// quantize's vjp (its soft path), g like x: y [n] = d/dx (wrt_c false), or y [j] = the
// centroids' gradient summed over the n elements in order.
void quantize_backward_twin(const float* x, int64_t n, const float* c, int64_t j, const float* g, bool wrt_c,
                            float* y);

// attribution_stats' vjp: g [b, 3]; y (like delta) = the gradient of
// Σ attribution_stats(delta, a) · g w.r.t. delta (wrt_a false) or a.
void attribution_stats_backward_twin(const float* delta, const float* a, const float* g, int64_t b, int64_t pixels,
                                     int64_t channels, int64_t k, bool wrt_a, float* y);

}  // namespace agilenn::cuda
