// Bilinear resize of NHWC images with half-pixel centres: the resize_bilinear op's CPU
// kernel, also called directly by the data loader (no graph needed for a host batch).
#pragma once

#include <cstdint>

#include "engine/core/tensor.h"

namespace agilenn::cpu {

// x [N,H,W,C] (host, float32 or float64) resized to [N,out_h,out_w,C].
Tensor resize_bilinear(const Tensor& x, int64_t out_h, int64_t out_w);

// The same into `out` [N,OH,OW,C] of x's dtype.
void resize_bilinear_into(const Tensor& x, Tensor& out);

}  // namespace agilenn::cpu
