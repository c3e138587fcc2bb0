// The depthwise convolution's test table and harness: geometries, the graph of the
// conv2d family for one of them, and the twin (kernels/shared/depthwise_conv2d.h) run on
// its feeds. Used by test_depthwise_twin.cpp (every build) and test_cuda_depthwise.cpp.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/ir/ops.h"
#include "engine/runtime/executor.h"
#include "kernels/shared/depthwise_conv2d.h"
#include "tests/gradcheck.h"
#include "tests/test_util.h"

namespace agilenn::testing {

struct ConvCase {
  int64_t n, h, w, c;
  int64_t m;  // channel multiplier (depthwise) or output channels per group
  int64_t kh, kw;
  int64_t stride_h, stride_w;
  int64_t dil_h, dil_w;
  bool same;
  int64_t groups = 0;  // 0: depthwise (groups = c)
};

inline std::string describe(const ConvCase& k) {
  std::ostringstream os;
  os << "x [" << k.n << "," << k.h << "," << k.w << "," << k.c << "] filter " << k.kh << "x" << k.kw << " m " << k.m
     << " stride " << k.stride_h << "x" << k.stride_w << " dilation " << k.dil_h << "x" << k.dil_w << " "
     << (k.same ? "same" : "valid") << " groups " << (k.groups ? k.groups : k.c);
  return os.str();
}

// Strides 1-3, dilation 1-2, same and valid padding (odd sizes with stride 2 or 3 give the
// asymmetric "same" split), channel multiplier 1 and 2, non-square filters and strides,
// geometries with more than one reduction chunk in the filter gradient (> 2048 pixels),
// and channel counts that fill whole groups of vectors.
inline const std::vector<ConvCase>& depthwise_cases() {
  static const std::vector<ConvCase> cases = {
      {2, 7, 9, 3, 1, 3, 3, 1, 1, 1, 1, true},   {2, 8, 8, 4, 1, 3, 3, 2, 2, 1, 1, true},
      {1, 9, 11, 5, 1, 3, 3, 3, 3, 1, 1, true},  {2, 10, 7, 3, 1, 3, 3, 3, 3, 1, 1, false},
      {2, 11, 9, 4, 1, 3, 3, 1, 1, 2, 2, true},  {1, 12, 13, 3, 1, 3, 3, 2, 2, 2, 2, true},
      {2, 9, 9, 3, 2, 3, 3, 1, 1, 1, 1, true},   {2, 10, 11, 5, 2, 3, 3, 2, 2, 1, 1, true},
      {1, 13, 8, 2, 2, 5, 3, 3, 2, 1, 2, false}, {3, 6, 5, 7, 1, 2, 2, 1, 1, 1, 1, true},
      {2, 8, 9, 3, 1, 4, 2, 2, 3, 1, 1, true},   {1, 5, 5, 33, 1, 3, 3, 1, 1, 1, 1, true},
      {4, 31, 31, 5, 1, 3, 3, 1, 1, 1, 1, true}, {3, 33, 29, 2, 2, 3, 3, 1, 1, 1, 1, false},
      {2, 24, 24, 3, 1, 3, 3, 3, 3, 1, 1, true},  // the paper FE's stride-3 first layer, scaled down
      // Channels in whole groups of vectors (the CPU backend's wide-channel loops)
      {2, 9, 11, 32, 1, 3, 3, 1, 1, 1, 1, true}, {2, 10, 9, 64, 1, 3, 3, 2, 2, 1, 1, true},
      {1, 11, 8, 32, 1, 5, 3, 1, 2, 2, 1, true}, {2, 8, 7, 64, 1, 3, 3, 2, 1, 1, 1, false},
      {1, 6, 6, 32, 2, 3, 3, 1, 1, 1, 1, true},
  };
  return cases;
}

// Dense and grouped (not depthwise) geometries for the cuDNN path, including the
// asymmetric "same" padding of even kernels and of stride 2 on even inputs.
inline const std::vector<ConvCase>& cudnn_cases() {
  static const std::vector<ConvCase> cases = {
      {2, 8, 8, 3, 5, 3, 3, 1, 1, 1, 1, true, 1},  {2, 8, 8, 4, 6, 3, 3, 2, 2, 1, 1, true, 1},
      {2, 9, 7, 3, 4, 3, 3, 2, 2, 1, 1, true, 1},  {1, 10, 10, 4, 3, 2, 2, 1, 1, 1, 1, true, 1},
      {2, 11, 9, 6, 4, 3, 3, 1, 1, 2, 2, true, 1}, {2, 9, 9, 6, 4, 3, 3, 3, 3, 1, 1, false, 1},
      {3, 6, 6, 8, 16, 1, 1, 1, 1, 1, 1, true, 1}, {2, 8, 8, 8, 3, 3, 3, 1, 1, 1, 1, true, 4},
      {2, 10, 10, 6, 2, 3, 3, 2, 2, 1, 1, true, 2},
  };
  return cases;
}

struct ConvGraph {
  Graph g;
  Value x, w, gy, y, dx, dw;
};

inline void build(ConvGraph& cg, const ConvCase& k, DType dtype = DType::f32) {
  const int64_t groups = k.groups ? k.groups : k.c;
  cg.x = ops::leaf(cg.g, "x", {k.n, k.h, k.w, k.c}, dtype);
  cg.w = ops::leaf(cg.g, "w", {k.kh, k.kw, k.c / groups, groups * k.m}, dtype);
  ops::Conv2dOptions opt;
  opt.stride = {k.stride_h, k.stride_w};
  opt.dilation = {k.dil_h, k.dil_w};
  opt.padding = k.same ? ops::Padding::same : ops::Padding::valid;
  opt.groups = groups;
  cg.y = ops::conv2d(cg.x, cg.w, opt);
  cg.gy = ops::leaf(cg.g, "gy", cg.y.shape(), dtype);
  const Attrs attrs = cg.y.node().attrs;  // a copy: adding nodes may move the node list
  cg.dx = ops::conv2d_backward_input(cg.gy, cg.w, attrs, cg.x.shape());
  cg.dw = ops::conv2d_backward_filter(cg.x, cg.gy, attrs, cg.w.shape());
}

inline Feeds random_feeds(const ConvGraph& cg, uint64_t seed) {
  std::mt19937_64 rng(seed);
  return {{"x", random_tensor(cg.x.shape(), DType::f32, rng)},
          {"w", random_tensor(cg.w.shape(), DType::f32, rng)},
          {"gy", random_tensor(cg.gy.shape(), DType::f32, rng)}};
}

// The feeds in another floating dtype (random_feeds makes float32 ones).
inline Feeds feeds_as(const Feeds& feeds, DType dtype) {
  Feeds out;
  for (const auto& [name, t] : feeds) out[name] = t.to(dtype);
  return out;
}

inline kernels::DepthwiseGeometry geometry(const ConvGraph& cg) {
  const Attrs& a = cg.y.node().attrs;
  const ConvGeometry g =
      conv_geometry(cg.x.shape(), cg.w.shape(), a.ints("stride"), a.ints("dilation"), a.ints("pads"), a.i("groups"));
  EXPECT_TRUE(kernels::is_depthwise(g));
  return kernels::depthwise_geometry(g);
}

// Scaled by the tensor's largest magnitude: float32 results that differ only in summation
// order (or fused multiply-adds) agree to a few ulps of the largest partial sum, not of each
// small element.
inline double tensor_error(const Tensor& expect, const Tensor& got, double rtol) {
  const Tensor a = expect.to(DType::f64), b = got.to(DType::f64);
  double scale = 0;
  for (int64_t i = 0; i < a.numel(); ++i) scale = std::max(scale, std::abs(a.item(i)));
  return scaled_error(a, b, rtol, rtol * scale + 1e-30);
}

// The twin's outputs y, dx, dw for the feeds.
inline std::array<Tensor, 3> run_twin(const ConvGraph& cg, const Feeds& feeds) {
  const kernels::DepthwiseGeometry g = geometry(cg);
  std::array<Tensor, 3> out{Tensor::zeros(cg.y.shape(), DType::f32), Tensor::zeros(cg.x.shape(), DType::f32),
                            Tensor::zeros(cg.w.shape(), DType::f32)};
  const float* x = feeds.at("x").data<float>();
  const float* w = feeds.at("w").data<float>();
  const float* gy = feeds.at("gy").data<float>();
  kernels::depthwise_conv2d_forward_twin(g, x, w, out[0].data<float>());
  kernels::depthwise_conv2d_backward_input_twin(g, gy, w, out[1].data<float>());
  kernels::depthwise_conv2d_backward_filter_twin(g, x, gy, out[2].data<float>());
  return out;
}

inline const char* const kOutputNames[3] = {"conv2d", "conv2d_backward_input", "conv2d_backward_filter"};

// float32 against float32 in another summation order: forward and data gradient sum at
// most KH·KW·m products, the filter gradient up to N·OH·OW (a few thousand here), so its
// rounding is larger; both bounds are a few hundred ulps of the largest element.
constexpr double kRtolWindow = 2e-5;
constexpr double kRtolFilter = 1e-4;

}  // namespace agilenn::testing
