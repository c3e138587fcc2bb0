// Per-element math of the depthwise convolution (one input channel per group, channel
// multiplier m: input channel c feeds output channels c*m .. c*m+m-1). NHWC tensors, filter
// [KH,KW,1,C*m] as the CPU backend stores it. The CUDA kernels
// (kernels/cuda/depthwise_conv2d.cu) call these functions; so does the CPU backend
// (kernels/cpu/conv2d.cpp) for wide channels and filters other than 3×3. Its other loops
// run a tap at a time along a row's pixels and channels, and it sums the filter gradient in
// row blocks; so a twin (depthwise_conv2d_twin.cpp) runs these functions on the host in the
// GPU's order, and the tests hold it against the CPU backend in every build and the kernels
// against it on a GPU.
#pragma once

#include <cstdint>

#include "engine/ir/shape_util.h"
#include "kernels/shared/host_device.h"

namespace agilenn::kernels {

// Plain data, so kernels take it by value.
struct DepthwiseGeometry {
  int64_t n, h, w, c;  // input
  int64_t m;           // channel multiplier: output channels = c * m
  int64_t kh, kw;      // filter taps
  int64_t oh, ow;      // output
  int64_t stride_h, stride_w, dil_h, dil_w;
  int64_t pad_top, pad_left;  // bottom/right padding only shapes oh/ow
  AGILENN_HD int64_t cout() const { return c * m; }
  AGILENN_HD int64_t positions() const { return n * oh * ow; }  // output pixels
  AGILENN_HD int64_t filter_size() const { return kh * kw * c * m; }
};

// The taps (kh, kw) of output pixel (oh, ow)'s window that fall inside the input, in tap
// order, each with the input pixel it reads: f(kh, kw, ih, iw).
template <class F>
AGILENN_HD void for_each_window_tap(const DepthwiseGeometry& g, int64_t oh, int64_t ow, F&& f) {
  for (int64_t kh = 0; kh < g.kh; ++kh) {
    const int64_t ih = oh * g.stride_h - g.pad_top + kh * g.dil_h;
    if (ih < 0 || ih >= g.h) continue;
    for (int64_t kw = 0; kw < g.kw; ++kw) {
      const int64_t iw = ow * g.stride_w - g.pad_left + kw * g.dil_w;
      if (iw >= 0 && iw < g.w) f(kh, kw, ih, iw);
    }
  }
}

// The output pixels whose windows read input pixel (ih, iw), in tap order, each with the
// tap that reads it (tap kh reads it when oh·stride = ih + pad − kh·dil): f(kh, kw, oh, ow).
template <class F>
AGILENN_HD void for_each_window_reading(const DepthwiseGeometry& g, int64_t ih, int64_t iw, F&& f) {
  for (int64_t kh = 0; kh < g.kh; ++kh) {
    const int64_t th = ih + g.pad_top - kh * g.dil_h;
    if (th < 0 || th % g.stride_h != 0 || th / g.stride_h >= g.oh) continue;
    for (int64_t kw = 0; kw < g.kw; ++kw) {
      const int64_t tw = iw + g.pad_left - kw * g.dil_w;
      if (tw >= 0 && tw % g.stride_w == 0 && tw / g.stride_w < g.ow) f(kh, kw, th / g.stride_h, tw / g.stride_w);
    }
  }
}

// Output element i of y [N,OH,OW,C*m]: the window sum over the taps inside the input.
template <class T>
AGILENN_HD T depthwise_forward_at(const DepthwiseGeometry& g, const T* x, const T* w, int64_t i) {
  const int64_t cout = g.cout();
  const int64_t co = i % cout;
  int64_t r = i / cout;
  const int64_t ow = r % g.ow;
  r /= g.ow;
  const int64_t oh = r % g.oh, n = r / g.oh;
  const int64_t c = co / g.m;
  T acc = T(0);
  for_each_window_tap(g, oh, ow, [&](int64_t kh, int64_t kw, int64_t ih, int64_t iw) {
    acc += x[((n * g.h + ih) * g.w + iw) * g.c + c] * w[(kh * g.kw + kw) * cout + co];
  });
  return acc;
}

// Input-gradient element i of dx [N,H,W,C]: gathers the output pixels whose windows read
// input pixel (ih, iw), so every element is written by one thread and no atomics are
// needed.
template <class T>
AGILENN_HD T depthwise_input_grad_at(const DepthwiseGeometry& g, const T* gy, const T* w, int64_t i) {
  const int64_t cout = g.cout();
  const int64_t c = i % g.c;
  int64_t r = i / g.c;
  const int64_t iw = r % g.w;
  r /= g.w;
  const int64_t ih = r % g.h, n = r / g.h;
  T acc = T(0);
  for_each_window_reading(g, ih, iw, [&](int64_t kh, int64_t kw, int64_t oh, int64_t ow) {
    const T* gyp = gy + ((n * g.oh + oh) * g.ow + ow) * cout + c * g.m;
    const T* wp = w + (kh * g.kw + kw) * cout + c * g.m;
    for (int64_t j = 0; j < g.m; ++j) acc += gyp[j] * wp[j];
  });
  return acc;
}

// Part of the filter gradient dw[tap, co] (tap = kh*KW + kw): the sum of x·gy over the
// output pixels p = first, first + step, ... below last (p flat over N, OH, OW).
template <class T>
AGILENN_HD T depthwise_filter_grad_partial(const DepthwiseGeometry& g, const T* x, const T* gy, int64_t tap,
                                           int64_t co, int64_t first, int64_t last, int64_t step) {
  const int64_t cout = g.cout();
  const int64_t kh = tap / g.kw, kw = tap % g.kw, c = co / g.m;
  T acc = T(0);
  for (int64_t p = first; p < last; p += step) {
    const int64_t ow = p % g.ow, r = p / g.ow;
    const int64_t oh = r % g.oh, n = r / g.oh;
    const int64_t ih = oh * g.stride_h - g.pad_top + kh * g.dil_h;
    const int64_t iw = ow * g.stride_w - g.pad_left + kw * g.dil_w;
    if (ih < 0 || ih >= g.h || iw < 0 || iw >= g.w) continue;
    acc += x[((n * g.h + ih) * g.w + iw) * g.c + c] * gy[p * cout + co];
  }
  return acc;
}

// The filter gradient's fixed reduction plan. Output pixels are split into `chunks`
// contiguous ranges; in each, kDwLanes lanes take interleaved pixels, and the lanes are
// summed by a pairwise tree (lane l += lane l + 4, + 2, + 1). Chunk results are then
// added in chunk order. The plan depends on the geometry only, never on the device, so
// the result is deterministic and the twin can follow it exactly.
constexpr int kDwLanes = 8;         // threadIdx.y of the filter-gradient kernel
constexpr int kDwChannelTile = 32;  // threadIdx.x: consecutive output channels (coalesced)
constexpr int64_t kDwPixelsPerLane = 256;
constexpr int64_t kDwMaxChunks = 1024;

AGILENN_HD int64_t depthwise_filter_chunks(const DepthwiseGeometry& g) {
  const int64_t per_chunk = kDwLanes * kDwPixelsPerLane;
  const int64_t chunks = (g.positions() + per_chunk - 1) / per_chunk;
  return chunks < 1 ? 1 : (chunks > kDwMaxChunks ? kDwMaxChunks : chunks);
}

// First output pixel of chunk k (k = chunks gives the end).
AGILENN_HD int64_t depthwise_chunk_begin(const DepthwiseGeometry& g, int64_t chunks, int64_t k) {
  return g.positions() * k / chunks;
}

// The grouping the depthwise kernels handle (the CPU backend's direct-loop case too).
inline bool is_depthwise(const ConvGeometry& g) { return g.cin_g == 1 && g.groups > 1; }

inline DepthwiseGeometry depthwise_geometry(const ConvGeometry& g) {
  return DepthwiseGeometry{g.n,        g.h,        g.w,        g.c,     g.cout_g(), g.kh,       g.kw,     g.oh,
                           g.ow,       g.stride_h, g.stride_w, g.dil_h, g.dil_w,    g.pad_top,  g.pad_left};
}

// The twin: host pointers, the layouts above, the GPU's sums in the GPU's order.
void depthwise_conv2d_forward_twin(const DepthwiseGeometry& g, const float* x, const float* w, float* y);
void depthwise_conv2d_backward_input_twin(const DepthwiseGeometry& g, const float* gy, const float* w, float* dx);
void depthwise_conv2d_backward_filter_twin(const DepthwiseGeometry& g, const float* x, const float* gy, float* dw);

}  // namespace agilenn::kernels
