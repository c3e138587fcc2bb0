// Depthwise convolution kernels. Forward and data gradient: one thread per output
// element, channel innermost, so consecutive threads read consecutive channels (NHWC).
// Filter gradient: a fixed two-level reduction (see kernels/shared/depthwise_conv2d.h) — partial sums
// per (channel tile, tap, pixel chunk) block, then a pass adding the chunks in order —
// deterministic, with no float atomics.
#include "kernels/cuda/context.h"
#include "kernels/cuda/depthwise_conv2d.h"

namespace agilenn::cuda {
namespace {

using namespace kernels;  // the per-element functions and the reduction plan

// ---- kernels

__global__ void forward_kernel(DepthwiseGeometry g, const float* x, const float* w, float* y, int64_t total) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += step)
    y[i] = depthwise_forward_at(g, x, w, i);
}

__global__ void input_grad_kernel(DepthwiseGeometry g, const float* gy, const float* w, float* dx, int64_t total) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += step)
    dx[i] = depthwise_input_grad_at(g, gy, w, i);
}

// Block (kDwChannelTile × kDwLanes) for channel tile blockIdx.x, tap blockIdx.y, pixel
// chunk blockIdx.z: each lane sums its interleaved pixels, the lanes are tree-reduced in
// shared memory, and the chunk's sum goes to partial[chunk, tap, co].
__global__ void filter_grad_partial_kernel(DepthwiseGeometry g, const float* x, const float* gy, float* partial,
                                           int64_t chunks) {
  __shared__ float lanes[kDwLanes][kDwChannelTile];
  const int tx = static_cast<int>(threadIdx.x), ty = static_cast<int>(threadIdx.y);
  const int64_t cout = g.cout();
  const int64_t co = static_cast<int64_t>(blockIdx.x) * kDwChannelTile + tx;
  const int64_t tap = blockIdx.y, chunk = blockIdx.z;
  float acc = 0.0f;
  if (co < cout)
    acc = depthwise_filter_grad_partial(g, x, gy, tap, co, depthwise_chunk_begin(g, chunks, chunk) + ty,
                                        depthwise_chunk_begin(g, chunks, chunk + 1), int64_t{kDwLanes});
  lanes[ty][tx] = acc;
  __syncthreads();
  for (int offset = kDwLanes / 2; offset > 0; offset /= 2) {
    if (ty < offset) lanes[ty][tx] += lanes[ty + offset][tx];
    __syncthreads();
  }
  if (ty == 0 && co < cout) partial[(chunk * g.kh * g.kw + tap) * cout + co] = lanes[0][tx];
}

// dw[i] = Σ_chunk partial[chunk, i], chunks in order.
__global__ void filter_grad_sum_kernel(const float* partial, float* dw, int64_t size, int64_t chunks) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < size; i += step) {
    float acc = 0.0f;
    for (int64_t k = 0; k < chunks; ++k) acc += partial[k * size + i];
    dw[i] = acc;
  }
}

}  // namespace

// ---- launchers

void depthwise_conv2d_forward(const DepthwiseGeometry& g, const float* x, const float* w, float* y) {
  const int64_t total = g.positions() * g.cout();
  if (total == 0) return;
  forward_kernel<<<blocks_for(total), kThreads, 0, stream()>>>(g, x, w, y, total);
  AGILENN_CUDA_CHECK_LAUNCH();
}

void depthwise_conv2d_backward_input(const DepthwiseGeometry& g, const float* gy, const float* w, float* dx) {
  const int64_t total = g.n * g.h * g.w * g.c;
  if (total == 0) return;
  input_grad_kernel<<<blocks_for(total), kThreads, 0, stream()>>>(g, gy, w, dx, total);
  AGILENN_CUDA_CHECK_LAUNCH();
}

void depthwise_conv2d_backward_filter(const DepthwiseGeometry& g, const float* x, const float* gy, float* dw) {
  const int64_t size = g.filter_size();
  if (size == 0) return;
  AGILENN_CHECK(g.kh * g.kw <= 65535, "depthwise conv2d: " << g.kh << "x" << g.kw << " filter has too many taps");
  const int64_t chunks = depthwise_filter_chunks(g);
  float* partial = static_cast<float*>(workspace(static_cast<size_t>(chunks * size) * sizeof(float)));
  const dim3 grid(static_cast<unsigned>((g.cout() + kDwChannelTile - 1) / kDwChannelTile),
                  static_cast<unsigned>(g.kh * g.kw), static_cast<unsigned>(chunks));
  filter_grad_partial_kernel<<<grid, dim3(kDwChannelTile, kDwLanes), 0, stream()>>>(g, x, gy, partial, chunks);
  AGILENN_CUDA_CHECK_LAUNCH();
  filter_grad_sum_kernel<<<blocks_for(size), kThreads, 0, stream()>>>(partial, dw, size, chunks);
  AGILENN_CUDA_CHECK_LAUNCH();
}

}  // namespace agilenn::cuda
