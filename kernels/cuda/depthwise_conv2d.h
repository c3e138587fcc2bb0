// Hand-written depthwise convolution (one input channel per group, any channel
// multiplier, stride, dilation and padding): forward, data gradient and filter gradient
// as CUDA launchers on cuda::stream(), and their CPU twins, which run the same per-element
// math (depthwise_conv2d.cuh) in the same order on host memory.
#pragma once

#include "engine/ir/shape_util.h"
#include "kernels/cuda/depthwise_conv2d.cuh"

namespace agilenn::cuda {

// The grouping the depthwise kernels handle (the CPU backend's direct-loop case too).
inline bool is_depthwise(const ConvGeometry& g) { return g.cin_g == 1 && g.groups > 1; }

inline DepthwiseGeometry depthwise_geometry(const ConvGeometry& g) {
  return DepthwiseGeometry{g.n,        g.h,        g.w,        g.c,     g.cout_g(), g.kh,       g.kw,     g.oh,
                           g.ow,       g.stride_h, g.stride_w, g.dil_h, g.dil_w,    g.pad_top,  g.pad_left};
}

// Device pointers; y [N,OH,OW,C*m], x and dx [N,H,W,C], w and dw [KH,KW,1,C*m].
void depthwise_conv2d_forward(const DepthwiseGeometry& g, const float* x, const float* w, float* y);
void depthwise_conv2d_backward_input(const DepthwiseGeometry& g, const float* gy, const float* w, float* dx);
// Deterministic: a fixed two-level reduction with no atomics (scratch in cuda::workspace).
void depthwise_conv2d_backward_filter(const DepthwiseGeometry& g, const float* x, const float* gy, float* dw);

// The CPU twins: host pointers, same layouts, same results up to fused multiply-adds.
void depthwise_conv2d_forward_twin(const DepthwiseGeometry& g, const float* x, const float* w, float* y);
void depthwise_conv2d_backward_input_twin(const DepthwiseGeometry& g, const float* gy, const float* w, float* dx);
void depthwise_conv2d_backward_filter_twin(const DepthwiseGeometry& g, const float* x, const float* gy, float* dw);

}  // namespace agilenn::cuda
