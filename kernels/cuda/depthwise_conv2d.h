// Hand-written depthwise convolution (one input channel per group, any channel
// multiplier, stride, dilation and padding): forward, data gradient and filter gradient
// as CUDA launchers on cuda::stream(), over the per-element math and reduction plan of
// kernels/shared/depthwise_conv2d.h.
#pragma once

#include "kernels/shared/depthwise_conv2d.h"

namespace agilenn::cuda {

using kernels::depthwise_geometry;
using kernels::DepthwiseGeometry;
using kernels::is_depthwise;

// Device pointers; y [N,OH,OW,C*m], x and dx [N,H,W,C], w and dw [KH,KW,1,C*m].
void depthwise_conv2d_forward(const DepthwiseGeometry& g, const float* x, const float* w, float* y);
void depthwise_conv2d_backward_input(const DepthwiseGeometry& g, const float* gy, const float* w, float* dx);
// Deterministic: a fixed two-level reduction with no atomics (scratch in cuda::workspace).
void depthwise_conv2d_backward_filter(const DepthwiseGeometry& g, const float* x, const float* gy, float* dw);

}  // namespace agilenn::cuda
