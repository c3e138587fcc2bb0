// Fused ops of the AgileNN step: quantize and attribution_stats, and their vjps
// (quantize_backward, attribution_stats_backward), float32. The per-element math is the
// CPU backend's (kernels/shared/agilenn_fused.h).
#include <algorithm>

#include "kernels/cuda/cuda_kernels.h"
#include "kernels/shared/agilenn_fused.h"

namespace agilenn::cuda {
namespace {

using kernels::AttributionAcc;
using kernels::AttributionExtrema;
using kernels::rn::add;

// quantize_backward keeps a thread's exps of the centroids in registers or local memory:
// a fixed bound, checked by the launcher.
constexpr int64_t kMaxCentroids = 64;

// y[i] = nearest centroid of x[i]; one thread per element (grid-stride).
__global__ void quantize_kernel(const float* x, int64_t n, const float* c, int64_t j, float* y) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    y[i] = kernels::quantize_one(x[i], c, j);
}

// attribution_stats and its vjp reduce each sample's pixels·channels elements. A sample is
// cut into parts of at least kPartElements (at most kMaxParts of them), one block each, so
// that even a small batch fills the device; each block merges its threads' strided
// accumulators by a fixed shared-memory tree, then one thread per sample merges the parts
// in order. The cut depends only on the sample's size, not on the batch or the device, so
// a sample's result is the same bits in any batch.
constexpr int64_t kPartElements = 2048;  // 8 elements per thread
constexpr int64_t kMaxParts = 256;

int64_t parts_per_sample(int64_t per_sample) {
  return std::max<int64_t>(1, std::min(kMaxParts, per_sample / kPartElements));
}

// The two accumulators the kernels reduce with: the forward's sums and extremes, and the
// vjp's extremes with their tie counts.
struct StatsReduce {
  using Acc = AttributionAcc<float>;
  static __device__ Acc init() { return kernels::attribution_init<float>(); }
  static __device__ void add(Acc& acc, float v, bool local) { kernels::attribution_add(acc, v, local); }
  static __device__ Acc merge(const Acc& a, const Acc& b) { return kernels::attribution_merge(a, b); }
};
struct ExtremaReduce {
  using Acc = AttributionExtrema<float>;
  static __device__ Acc init() { return kernels::attribution_extrema_init<float>(); }
  static __device__ void add(Acc& acc, float v, bool local) { kernels::attribution_extrema_add(acc, v, local); }
  static __device__ Acc merge(const Acc& a, const Acc& b) { return kernels::attribution_extrema_merge(a, b); }
};

// partial[s·parts + p] = the accumulator of part p of sample s.
template <class R>
__global__ void attribution_parts_kernel(const float* delta, const float* a, int64_t b, int64_t per_sample,
                                         int64_t channels, int64_t k, int64_t parts, typename R::Acc* partial) {
  __shared__ typename R::Acc sh[kThreads];
  const int t = static_cast<int>(threadIdx.x);
  const int64_t len = (per_sample + parts - 1) / parts;
  for (int64_t blk = blockIdx.x; blk < b * parts; blk += gridDim.x) {
    const int64_t s = blk / parts, begin = (blk % parts) * len;
    const int64_t end = begin + len < per_sample ? begin + len : per_sample;
    const float* dp = delta + s * per_sample;
    const float* ap = a + s * per_sample;
    typename R::Acc acc = R::init();
    for (int64_t i = begin + t; i < end; i += kThreads) R::add(acc, kernels::attribution_of(dp[i], ap[i]), i % channels < k);
    sh[t] = acc;
    __syncthreads();
    for (int step = kThreads / 2; step > 0; step /= 2) {
      if (t < step) sh[t] = R::merge(sh[t], sh[t + step]);
      __syncthreads();
    }
    if (t == 0) partial[blk] = sh[0];
    __syncthreads();  // sh is written again by the next part
  }
}

// Merges each sample's parts in order; finish(s, merged).
template <class R, class Finish>
__global__ void attribution_merge_kernel(const typename R::Acc* partial, int64_t b, int64_t parts, Finish finish) {
  for (int64_t s = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; s < b;
       s += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    typename R::Acc acc = partial[s * parts];
    for (int64_t p = 1; p < parts; ++p) acc = R::merge(acc, partial[s * parts + p]);
    finish(s, acc);
  }
}

struct WriteStats {
  float* y;
  __device__ void operator()(int64_t s, const AttributionAcc<float>& acc) const {
    kernels::attribution_write(acc, y + s * 3);
  }
};
struct KeepExtrema {
  AttributionExtrema<float>* e;
  __device__ void operator()(int64_t s, const AttributionExtrema<float>& acc) const { e[s] = acc; }
};

// attribution_stats' vjp, element by element, from each sample's extrema.
__global__ void attribution_grad_kernel(const float* delta, const float* a, const float* g, int64_t n,
                                        int64_t per_sample, int64_t channels, int64_t k, bool wrt_a,
                                        const AttributionExtrema<float>* e, float* y) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t s = i / per_sample;
    const float g3[3] = {g[s * 3], g[s * 3 + 1], g[s * 3 + 2]};
    y[i] = kernels::attribution_grad_one(delta[i], a[i], i % per_sample % channels < k, g3, e[s], wrt_a);
  }
}

// quantize's vjp w.r.t. x: one thread per element (grid-stride).
__global__ void quantize_backward_x_kernel(const float* x, int64_t n, const float* c, int64_t j, const float* g,
                                           float* y) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float exps[kMaxCentroids];
    y[i] = kernels::quantize_soft_grad(x[i], c, j, g[i], exps, [](int64_t, float, float) {});
  }
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
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + t; i < n;
       i += static_cast<int64_t>(gridDim.x) * kThreads) {
    float exps[kMaxCentroids];
    kernels::quantize_soft_grad(x[i], c, j, g[i], exps, [&](int64_t k, float gp, float gd) {
      if (k < k0 || k >= k0 + kn) return;
      float& acc = sh[(k - k0) * kThreads + t];
      acc = add(acc, kernels::rn::sub(gp, gd));
    });
  }
  __syncthreads();
  for (int step = kThreads / 2; step > 0; step /= 2) {
    if (t < step)
      for (int64_t k = 0; k < kn; ++k) sh[k * kThreads + t] = add(sh[k * kThreads + t], sh[k * kThreads + t + step]);
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
    for (int64_t b = t; b < blocks; b += kThreads) acc = add(acc, partial[b * j + k]);
    sh[t] = acc;
    __syncthreads();
    for (int step = kThreads / 2; step > 0; step /= 2) {
      if (t < step) sh[t] = add(sh[t], sh[t + step]);
      __syncthreads();
    }
    if (t == 0) y[k] = sh[0];
    __syncthreads();  // sh is written again for the next centroid
  }
}

// ---- host launchers

void launch_quantize(const float* x, int64_t n, const float* c, int64_t j, float* y) {
  if (n == 0) return;
  quantize_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(x, n, c, j, y);
  AGILENN_CUDA_CHECK_LAUNCH();
}

// Parts of every sample reduced into workspace, then merged per sample.
template <class R, class Finish>
void reduce_attribution(const float* delta, const float* a, int64_t b, int64_t per_sample, int64_t channels,
                        int64_t k, size_t extra_bytes, Finish&& finish_with) {
  const int64_t parts = parts_per_sample(per_sample);
  const size_t partial_bytes = (static_cast<size_t>(b * parts) * sizeof(typename R::Acc) + 255) / 256 * 256;
  char* ws = static_cast<char*>(workspace(partial_bytes + extra_bytes));
  auto* partial = reinterpret_cast<typename R::Acc*>(ws);
  const unsigned grid = static_cast<unsigned>(std::min<int64_t>(b * parts, 1 << 30));
  attribution_parts_kernel<R><<<grid, kThreads, 0, stream()>>>(delta, a, b, per_sample, channels, k, parts, partial);
  AGILENN_CUDA_CHECK_LAUNCH();
  attribution_merge_kernel<R><<<blocks_for(b), kThreads, 0, stream()>>>(partial, b, parts, finish_with(ws + partial_bytes));
  AGILENN_CUDA_CHECK_LAUNCH();
}

void launch_attribution_stats(const float* delta, const float* a, int64_t b, int64_t pixels, int64_t channels,
                              int64_t k, float* y) {
  if (b == 0) return;
  reduce_attribution<StatsReduce>(delta, a, b, pixels * channels, channels, k, 0,
                                  [&](char*) { return WriteStats{y}; });
}

void launch_quantize_backward(const float* x, int64_t n, const float* c, int64_t j, const float* g, bool wrt_c,
                              float* y) {
  AGILENN_CHECK(j <= kMaxCentroids, "quantize_backward: the CUDA kernels take at most " << kMaxCentroids
                                                                                       << " centroids, not " << j);
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

void launch_attribution_stats_backward(const float* delta, const float* a, const float* g, int64_t b,
                                       int64_t pixels, int64_t channels, int64_t k, bool wrt_a, float* y) {
  const int64_t per_sample = pixels * channels;
  if (b == 0 || per_sample == 0) return;
  AttributionExtrema<float>* e = nullptr;
  reduce_attribution<ExtremaReduce>(delta, a, b, per_sample, channels, k,
                                    static_cast<size_t>(b) * sizeof(AttributionExtrema<float>), [&](char* extra) {
                                      e = reinterpret_cast<AttributionExtrema<float>*>(extra);
                                      return KeepExtrema{e};
                                    });
  attribution_grad_kernel<<<blocks_for(b * per_sample), kThreads, 0, stream()>>>(delta, a, g, b * per_sample,
                                                                                 per_sample, channels, k, wrt_a, e, y);
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
  table.add("attribution_stats_backward", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    dispatch_f32(out.dtype(), node, [&](float) {
      launch_attribution_stats_backward(in[0].data<float>(), in[1].data<float>(), in[2].data<float>(), in[0].dim(0),
                                        in[0].dim(1) * in[0].dim(2), in[0].dim(3), node.attrs.i("local_channels"),
                                        node.attrs.i("wrt") == 1, out.data<float>());
    });
  });
}

}  // namespace agilenn::cuda
