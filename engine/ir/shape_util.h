// Shape arithmetic shared by shape rules, the autodiff driver and kernels.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "engine/core/tensor.h"

namespace agilenn {

// Maps a possibly negative axis into [0, rank); throws when out of range.
int64_t normalize_axis(int64_t axis, size_t rank);
// Sorted, unique, non-negative axes; an empty list means every axis.
std::vector<int64_t> normalize_axes(const std::vector<int64_t>& axes, size_t rank);
// Numpy broadcasting of two shapes; throws when incompatible.
Shape broadcast_shapes(const Shape& a, const Shape& b);
Shape reduced_shape(const Shape& in, const std::vector<int64_t>& axes, bool keepdims);
// Normalized axes {0, ..., k-1} with k < rank: a reduction over them leaves rows of
// contiguous kept elements (a column sum).
bool leading_axes(const std::vector<int64_t>& axes, size_t rank);

// Geometry of one 2-D convolution over NHWC input and HWIO filter [KH,KW,C/groups,Cout].
struct ConvGeometry {
  int64_t n, h, w, c;         // input
  int64_t kh, kw, cin_g, cout;  // filter; cin_g = c / groups
  int64_t oh, ow;             // output
  int64_t stride_h, stride_w, dil_h, dil_w;
  int64_t pad_top, pad_left;  // bottom/right padding only shapes oh/ow
  int64_t groups;
  int64_t cout_g() const { return cout / groups; }
};

// pads = [top, bottom, left, right].
ConvGeometry conv_geometry(const Shape& x, const Shape& w, const std::vector<int64_t>& stride,
                           const std::vector<int64_t>& dilation, const std::vector<int64_t>& pads,
                           int64_t groups);

// TensorFlow's "same" rule: out = ceil(in / stride), total padding split floor/ceil
// (the extra row or column goes after). Returns [before, after].
std::array<int64_t, 2> same_padding(int64_t in, int64_t kernel, int64_t stride, int64_t dilation);

}  // namespace agilenn
