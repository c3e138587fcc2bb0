// Fused ops of the AgileNN step: quantize and attribution_stats, and their vjps
// (quantize_backward, attribution_stats_backward); softmax_cross_entropy; see kernels/cpu/agilenn_fused.cpp. The per-element
// math is in agilenn_fused.cuh, shared with the CPU twins.
#include <algorithm>

#include "kernels/cuda/agilenn_fused.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace agilenn::cuda {
namespace {

// y[i] = nearest centroid of x[i]; one thread per element (grid-stride).
__global__ void quantize_kernel(const float* x, int64_t n, const float* c, int64_t j, float* y) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    y[i] = quantize_one(x[i], c, j);
}

// One block of kThreads per sample: each thread accumulates a strided part of the
// sample's pixels·channels elements, then a fixed shared-memory tree merges the parts.
__global__ void attribution_stats_kernel(const float* delta, const float* a, int64_t b, int64_t per_sample,
                                         int64_t channels, int64_t k, float* y) {
  __shared__ AttributionAcc sh[kThreads];
  const int t = static_cast<int>(threadIdx.x);
  for (int64_t s = blockIdx.x; s < b; s += gridDim.x) {
    const float* dp = delta + s * per_sample;
    const float* ap = a + s * per_sample;
    AttributionAcc acc = attribution_init();
    for (int64_t i = t; i < per_sample; i += kThreads)
      attribution_add(acc, attribution_of(dp[i], ap[i]), i % channels < k);
    sh[t] = acc;
    __syncthreads();
    for (int step = kThreads / 2; step > 0; step /= 2) {
      if (t < step) sh[t] = attribution_merge(sh[t], sh[t + step]);
      __syncthreads();
    }
    if (t == 0) attribution_write(sh[0], y + s * 3);
    __syncthreads();  // sh is written again by the next sample
  }
}

// quantize's vjp w.r.t. x: one thread per element (grid-stride).
__global__ void quantize_backward_x_kernel(const float* x, int64_t n, const float* c, int64_t j, const float* g,
                                           float* y) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    y[i] = quantize_soft_grad(x[i], c, j, g[i], [](int64_t, float) {});
}

// Centroids [k0, k0 + kn) of quantize's vjp w.r.t. the centroids, first stage: each
// thread sums its grid-strided elements' terms in shared memory (one column per
// centroid), a tree merges the block's threads, and the block writes its partial sums
// to partial[block][k]. The grid depends only on n, so the result is reproducible.
__global__ void quantize_backward_c_partial_kernel(const float* x, int64_t n, const float* c, int64_t j,
                                                   const float* g, int64_t k0, int64_t kn, float* partial) {
  extern __shared__ float sh[];  // [kn][kThreads]
  const int t = static_cast<int>(threadIdx.x);
  for (int64_t k = 0; k < kn; ++k) sh[k * kThreads + t] = 0.0f;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + t; i < n; i += static_cast<int64_t>(gridDim.x) * kThreads)
    quantize_soft_grad(x[i], c, j, g[i], [&](int64_t k, float v) {
      if (k >= k0 && k < k0 + kn) sh[(k - k0) * kThreads + t] = rn_add(sh[(k - k0) * kThreads + t], v);
    });
  __syncthreads();
  for (int step = kThreads / 2; step > 0; step /= 2) {
    if (t < step)
      for (int64_t k = 0; k < kn; ++k) sh[k * kThreads + t] = rn_add(sh[k * kThreads + t], sh[k * kThreads + t + step]);
    __syncthreads();
  }
  if (t == 0)
    for (int64_t k = 0; k < kn; ++k) partial[static_cast<int64_t>(blockIdx.x) * j + k0 + k] = sh[k * kThreads];
}

// Second stage, one block: y[k] = Σ_b partial[b][k] (strided per thread, then a tree).
__global__ void quantize_backward_c_finish_kernel(const float* partial, int64_t blocks, int64_t j, float* y) {
  __shared__ float sh[kThreads];
  const int t = static_cast<int>(threadIdx.x);
  for (int64_t k = 0; k < j; ++k) {
    float acc = 0.0f;
    for (int64_t b = t; b < blocks; b += kThreads) acc = rn_add(acc, partial[b * j + k]);
    sh[t] = acc;
    __syncthreads();
    for (int step = kThreads / 2; step > 0; step /= 2) {
      if (t < step) sh[t] = rn_add(sh[t], sh[t + step]);
      __syncthreads();
    }
    if (t == 0) y[k] = sh[0];
    __syncthreads();  // sh is written again for the next centroid
  }
}

// softmax_cross_entropy: one warp per row (grid-stride over rows). The lanes take
// strided classes; xor-butterfly shuffles combine the max (exact in any order) and the
// sum, leaving every lane with the same values; lane 0 writes the loss.
__global__ void softmax_cross_entropy_kernel(const float* x, const int32_t* labels, int64_t rows, int64_t classes,
                                             float* y, FaultSite fault) {
  constexpr unsigned kAll = 0xffffffffu;
  const int lane = static_cast<int>(threadIdx.x) & 31;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x / 32);
  for (int64_t r = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32; r < rows; r += warps) {
    const float* row = x + r * classes;
    float m = -INFINITY;
    for (int64_t j = lane; j < classes; j += 32) m = ce_max(m, row[j]);
    for (int off = 16; off > 0; off /= 2) m = ce_max(m, __shfl_xor_sync(kAll, m, off));
    float s = 0.0f;
    for (int64_t j = lane; j < classes; j += 32) s = rn_add(s, ce_exp_term(row[j], m));
    for (int off = 16; off > 0; off /= 2) s = rn_add(s, __shfl_xor_sync(kAll, s, off));
    if (lane == 0) {
      const int32_t label = labels[r];
      if (ce_label_ok(label, classes)) {
        y[r] = ce_loss(row[label], m, s);
      } else {
        y[r] = NAN;
        report_bad_index(fault, r, label, classes);
      }
    }
  }
}

// attribution_stats' vjp. One block of kThreads per sample: the threads find the
// sample's extrema and their tie counts (strided parts merged by a shared-memory tree),
// then each writes the gradient of its strided elements.
__global__ void attribution_stats_backward_kernel(const float* delta, const float* a, const float* g, int64_t b,
                                                  int64_t per_sample, int64_t channels, int64_t k, bool wrt_a,
                                                  float* y) {
  __shared__ AttributionExtrema sh[kThreads];
  const int t = static_cast<int>(threadIdx.x);
  for (int64_t s = blockIdx.x; s < b; s += gridDim.x) {
    const float* dp = delta + s * per_sample;
    const float* ap = a + s * per_sample;
    AttributionExtrema e = attribution_extrema_init();
    for (int64_t i = t; i < per_sample; i += kThreads)
      attribution_extrema_add(e, attribution_of(dp[i], ap[i]), i % channels < k);
    sh[t] = e;
    __syncthreads();
    for (int step = kThreads / 2; step > 0; step /= 2) {
      if (t < step) sh[t] = attribution_extrema_merge(sh[t], sh[t + step]);
      __syncthreads();
    }
    e = sh[0];
    const float g3[3] = {g[s * 3], g[s * 3 + 1], g[s * 3 + 2]};
    float* yp = y + s * per_sample;
    for (int64_t i = t; i < per_sample; i += kThreads)
      yp[i] = attribution_grad_one(dp[i], ap[i], i % channels < k, g3, e, wrt_a);
    __syncthreads();  // sh is written again by the next sample
  }
}

// ---- host launchers

void launch_quantize(const float* x, int64_t n, const float* c, int64_t j, float* y) {
  if (n == 0) return;
  quantize_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(x, n, c, j, y);
  AGILENN_CUDA_CHECK_LAUNCH();
}

void launch_attribution_stats(const float* delta, const float* a, int64_t b, int64_t pixels, int64_t channels,
                              int64_t k, float* y) {
  if (b == 0) return;
  const unsigned grid = static_cast<unsigned>(b < (1 << 30) ? b : (1 << 30));
  attribution_stats_kernel<<<grid, kThreads, 0, stream()>>>(delta, a, b, pixels * channels, channels, k, y);
  AGILENN_CUDA_CHECK_LAUNCH();
}

void launch_quantize_backward(const float* x, int64_t n, const float* c, int64_t j, const float* g, bool wrt_c,
                              float* y) {
  if (!wrt_c) {
    if (n == 0) return;
    quantize_backward_x_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(x, n, c, j, g, y);
    AGILENN_CUDA_CHECK_LAUNCH();
    return;
  }
  // Partial sums of up to kChunk centroids per launch (kChunk · kThreads floats of shared
  // memory), then one block adds the blocks' partials.
  constexpr int64_t kChunk = 32, kMaxBlocks = 1024;
  const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>(kMaxBlocks, (n + kThreads - 1) / kThreads));
  auto* partial = static_cast<float*>(workspace(static_cast<size_t>(blocks * j) * sizeof(float)));
  for (int64_t k0 = 0; k0 < j; k0 += kChunk) {
    const int64_t kn = std::min(kChunk, j - k0);
    quantize_backward_c_partial_kernel<<<static_cast<unsigned>(blocks), kThreads,
                                         static_cast<size_t>(kn * kThreads) * sizeof(float), stream()>>>(
        x, n, c, j, g, k0, kn, partial);
    AGILENN_CUDA_CHECK_LAUNCH();
  }
  quantize_backward_c_finish_kernel<<<1, kThreads, 0, stream()>>>(partial, blocks, j, y);
  AGILENN_CUDA_CHECK_LAUNCH();
}

void launch_softmax_cross_entropy(const float* x, const int32_t* labels, int64_t rows, int64_t classes, float* y,
                                  FaultSite fault) {
  if (rows == 0) return;
  softmax_cross_entropy_kernel<<<blocks_for(rows * 32), kThreads, 0, stream()>>>(x, labels, rows, classes, y, fault);
  AGILENN_CUDA_CHECK_LAUNCH();
}

void launch_attribution_stats_backward(const float* delta, const float* a, const float* g, int64_t b,
                                       int64_t pixels, int64_t channels, int64_t k, bool wrt_a, float* y) {
  if (b == 0 || pixels * channels == 0) return;
  const unsigned grid = static_cast<unsigned>(b < (1 << 30) ? b : (1 << 30));
  attribution_stats_backward_kernel<<<grid, kThreads, 0, stream()>>>(delta, a, g, b, pixels * channels, channels, k,
                                                                     wrt_a, y);
  AGILENN_CUDA_CHECK_LAUNCH();
}

}  // namespace

// ---- registration

void register_agilenn_fused(KernelTable& table) {
  table.add("quantize", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    dispatch_f32(out.dtype(), node, [&](float) {
      launch_quantize(in[0].data<float>(), out.numel(), in[1].data<float>(), in[1].numel(), out.data<float>());
    });
  });
  table.add("attribution_stats", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    dispatch_f32(out.dtype(), node, [&](float) {
      launch_attribution_stats(in[0].data<float>(), in[1].data<float>(), in[0].dim(0), in[0].dim(1) * in[0].dim(2),
                               in[0].dim(3), node.attrs.i("local_channels"), out.data<float>());
    });
  });
  table.add("quantize_backward", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    dispatch_f32(out.dtype(), node, [&](float) {
      launch_quantize_backward(in[0].data<float>(), in[0].numel(), in[1].data<float>(), in[1].numel(),
                               in[2].data<float>(), node.attrs.i("wrt") == 1, out.data<float>());
    });
  });
  table.add("softmax_cross_entropy", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    dispatch_f32(out.dtype(), node, [&](float) {
      launch_softmax_cross_entropy(in[0].data<float>(), in[1].data<int32_t>(), in[0].dim(0), in[0].dim(1),
                                   out.data<float>(), fault_site(node));
    });
  });
  table.add("attribution_stats_backward", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    dispatch_f32(out.dtype(), node, [&](float) {
      launch_attribution_stats_backward(in[0].data<float>(), in[1].data<float>(), in[2].data<float>(), in[0].dim(0),
                                        in[0].dim(1) * in[0].dim(2), in[0].dim(3), node.attrs.i("local_channels"),
                                        node.attrs.i("wrt") == 1, out.data<float>());
    });
  });
}

}  // namespace agilenn::cuda
