// The depthwise convolution's CPU twin against the CPU backend (runs everywhere), the
// CUDA depthwise kernels against the twin, and the CUDA backend's conv2d family (depthwise
// kernels and cuDNN, including asymmetric "same" padding) against the CPU backend. The
// GPU tests skip with the reason when there is no GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <random>
#include <sstream>
#include <string>

#include "engine/ir/ops.h"
#include "engine/runtime/executor.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/depthwise_conv2d.h"
#include "kernels/cuda/device.h"
#include "tests/gradcheck.h"
#include "tests/test_util.h"
#include "tests/gpu_test_util.h"

namespace agilenn::testing {
namespace {

struct ConvCase {
  int64_t n, h, w, c;
  int64_t m;  // channel multiplier (depthwise) or output channels per group
  int64_t kh, kw;
  int64_t stride_h, stride_w;
  int64_t dil_h, dil_w;
  bool same;
  int64_t groups = 0;  // 0: depthwise (groups = c)
};

std::string describe(const ConvCase& k) {
  std::ostringstream os;
  os << "x [" << k.n << "," << k.h << "," << k.w << "," << k.c << "] filter " << k.kh << "x" << k.kw << " m " << k.m
     << " stride " << k.stride_h << "x" << k.stride_w << " dilation " << k.dil_h << "x" << k.dil_w << " "
     << (k.same ? "same" : "valid") << " groups " << (k.groups ? k.groups : k.c);
  return os.str();
}

// Strides 1-3, dilation 1-2, same and valid padding (odd sizes with stride 2 or 3 give the
// asymmetric "same" split), channel multiplier 1 and 2, non-square filters and strides,
// and geometries with more than one reduction chunk in the filter gradient (> 2048 pixels).
const std::vector<ConvCase>& depthwise_cases() {
  static const std::vector<ConvCase> cases = {
      {2, 7, 9, 3, 1, 3, 3, 1, 1, 1, 1, true},   {2, 8, 8, 4, 1, 3, 3, 2, 2, 1, 1, true},
      {1, 9, 11, 5, 1, 3, 3, 3, 3, 1, 1, true},  {2, 10, 7, 3, 1, 3, 3, 3, 3, 1, 1, false},
      {2, 11, 9, 4, 1, 3, 3, 1, 1, 2, 2, true},  {1, 12, 13, 3, 1, 3, 3, 2, 2, 2, 2, true},
      {2, 9, 9, 3, 2, 3, 3, 1, 1, 1, 1, true},   {2, 10, 11, 5, 2, 3, 3, 2, 2, 1, 1, true},
      {1, 13, 8, 2, 2, 5, 3, 3, 2, 1, 2, false}, {3, 6, 5, 7, 1, 2, 2, 1, 1, 1, 1, true},
      {2, 8, 9, 3, 1, 4, 2, 2, 3, 1, 1, true},   {1, 5, 5, 33, 1, 3, 3, 1, 1, 1, 1, true},
      {4, 31, 31, 5, 1, 3, 3, 1, 1, 1, 1, true}, {3, 33, 29, 2, 2, 3, 3, 1, 1, 1, 1, false},
      {2, 24, 24, 3, 1, 3, 3, 3, 3, 1, 1, true},  // the paper FE's stride-3 first layer, scaled down
  };
  return cases;
}

// Dense and grouped (not depthwise) geometries for the cuDNN path, including the
// asymmetric "same" padding of even kernels and of stride 2 on even inputs.
const std::vector<ConvCase>& cudnn_cases() {
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

void build(ConvGraph& cg, const ConvCase& k, DType dtype = DType::f32) {
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

Feeds random_feeds(const ConvGraph& cg, uint64_t seed) {
  std::mt19937_64 rng(seed);
  return {{"x", random_tensor(cg.x.shape(), DType::f32, rng)},
          {"w", random_tensor(cg.w.shape(), DType::f32, rng)},
          {"gy", random_tensor(cg.gy.shape(), DType::f32, rng)}};
}

cuda::DepthwiseGeometry geometry(const ConvGraph& cg) {
  const Attrs& a = cg.y.node().attrs;
  const ConvGeometry g =
      conv_geometry(cg.x.shape(), cg.w.shape(), a.ints("stride"), a.ints("dilation"), a.ints("pads"), a.i("groups"));
  EXPECT_TRUE(cuda::is_depthwise(g));
  return cuda::depthwise_geometry(g);
}

// Scaled by the tensor's largest magnitude: float32 results that differ only in summation
// order (or fused multiply-adds) agree to a few ulps of the largest partial sum, not of each
// small element.
double tensor_error(const Tensor& expect, const Tensor& got, double rtol) {
  const Tensor a = expect.to(DType::f64), b = got.to(DType::f64);
  double scale = 0;
  for (int64_t i = 0; i < a.numel(); ++i) scale = std::max(scale, std::abs(a.item(i)));
  return scaled_error(a, b, rtol, rtol * scale + 1e-30);
}

// The twin's outputs y, dx, dw for the feeds.
std::array<Tensor, 3> run_twin(const ConvGraph& cg, const Feeds& feeds) {
  const cuda::DepthwiseGeometry g = geometry(cg);
  std::array<Tensor, 3> out{Tensor::zeros(cg.y.shape(), DType::f32), Tensor::zeros(cg.x.shape(), DType::f32),
                            Tensor::zeros(cg.w.shape(), DType::f32)};
  const float* x = feeds.at("x").data<float>();
  const float* w = feeds.at("w").data<float>();
  const float* gy = feeds.at("gy").data<float>();
  cuda::depthwise_conv2d_forward_twin(g, x, w, out[0].data<float>());
  cuda::depthwise_conv2d_backward_input_twin(g, gy, w, out[1].data<float>());
  cuda::depthwise_conv2d_backward_filter_twin(g, x, gy, out[2].data<float>());
  return out;
}

const char* const kOutputNames[3] = {"conv2d", "conv2d_backward_input", "conv2d_backward_filter"};

// float32 against float32 in another summation order: forward and data gradient sum at
// most KH·KW·m products, the filter gradient up to N·OH·OW (a few thousand here), so its
// rounding is larger; both bounds are a few hundred ulps of the largest element.
constexpr double kRtolWindow = 2e-5;
constexpr double kRtolFilter = 1e-4;

TEST(CudaDepthwiseTwin, MatchesTheCpuBackendOverTheGeometryTable) {
  for (size_t i = 0; i < depthwise_cases().size(); ++i) {
    const ConvCase& k = depthwise_cases()[i];
    ConvGraph cg;
    build(cg, k);
    const Feeds feeds = random_feeds(cg, 1000 + i);
    const auto cpu = evaluate(cg.g, {cg.y.id(), cg.dx.id(), cg.dw.id()}, feeds, cpu_backend());
    const auto twin = run_twin(cg, feeds);
    for (size_t o = 0; o < 3; ++o)
      EXPECT_LE(tensor_error(cpu[o], twin[o], o == 2 ? kRtolFilter : kRtolWindow), 1.0)
          << kOutputNames[o] << ", " << describe(k);
  }
}

// The twin's filter gradient does not depend on how the pixels are chunked beyond
// rounding: check it against a float64 sum as well, on the multi-chunk geometries.
TEST(CudaDepthwiseTwin, FilterGradientAgreesWithAFloat64Sum) {
  for (size_t i = 0; i < depthwise_cases().size(); ++i) {
    const ConvCase& k = depthwise_cases()[i];
    ConvGraph cg;
    build(cg, k);
    const cuda::DepthwiseGeometry g = geometry(cg);
    if (cuda::depthwise_filter_chunks(g) < 2) continue;
    const Feeds feeds = random_feeds(cg, 2000 + i);
    ConvGraph cg64;
    build(cg64, k, DType::f64);
    Feeds feeds64;
    for (const auto& [name, t] : feeds) feeds64[name] = t.to(DType::f64);
    const auto cpu64 = evaluate(cg64.g, {cg64.dw.id()}, feeds64, cpu_backend());
    const auto twin = run_twin(cg, feeds);
    EXPECT_LE(tensor_error(cpu64[0], twin[2], kRtolFilter), 1.0) << describe(k);
  }
}

// The CUDA kernels run the twin's math in the twin's order; they differ only where nvcc
// fuses a multiply-add, a rounding step per product.
constexpr double kRtolGpuVsTwin = 2e-5;

TEST(CudaDepthwiseKernels, MatchTheTwin) {
  AGILENN_SKIP_WITHOUT_GPU();
  Backend& gpu = cuda_backend();
  for (size_t i = 0; i < depthwise_cases().size(); ++i) {
    const ConvCase& k = depthwise_cases()[i];
    ConvGraph cg;
    build(cg, k);
    const cuda::DepthwiseGeometry g = geometry(cg);
    const Feeds feeds = random_feeds(cg, 3000 + i);
    const auto twin = run_twin(cg, feeds);
    const Tensor x = gpu.to_device(feeds.at("x")), w = gpu.to_device(feeds.at("w")), gy = gpu.to_device(feeds.at("gy"));
    Tensor y = gpu.to_device(Tensor::zeros(cg.y.shape(), DType::f32));
    Tensor dx = gpu.to_device(Tensor::zeros(cg.x.shape(), DType::f32));
    Tensor dw = gpu.to_device(Tensor::zeros(cg.w.shape(), DType::f32));
    cuda::depthwise_conv2d_forward(g, x.data<float>(), w.data<float>(), y.data<float>());
    cuda::depthwise_conv2d_backward_input(g, gy.data<float>(), w.data<float>(), dx.data<float>());
    cuda::depthwise_conv2d_backward_filter(g, x.data<float>(), gy.data<float>(), dw.data<float>());
    gpu.synchronize();
    const Tensor got[3] = {gpu.to_host(y), gpu.to_host(dx), gpu.to_host(dw)};
    for (size_t o = 0; o < 3; ++o)
      EXPECT_LE(tensor_error(twin[o], got[o], kRtolGpuVsTwin), 1.0) << kOutputNames[o] << ", " << describe(k);
  }
}

// The filter gradient's reduction plan is fixed by the geometry: two runs are bit-equal.
TEST(CudaDepthwiseKernels, FilterGradientIsDeterministic) {
  AGILENN_SKIP_WITHOUT_GPU();
  Backend& gpu = cuda_backend();
  const ConvCase& k = depthwise_cases()[12];
  ConvGraph cg;
  build(cg, k);
  const cuda::DepthwiseGeometry g = geometry(cg);
  ASSERT_GE(cuda::depthwise_filter_chunks(g), 2);
  const Feeds feeds = random_feeds(cg, 4000);
  const Tensor x = gpu.to_device(feeds.at("x")), gy = gpu.to_device(feeds.at("gy"));
  Tensor a = gpu.to_device(Tensor::zeros(cg.w.shape(), DType::f32));
  Tensor b = gpu.to_device(Tensor::zeros(cg.w.shape(), DType::f32));
  cuda::depthwise_conv2d_backward_filter(g, x.data<float>(), gy.data<float>(), a.data<float>());
  cuda::depthwise_conv2d_backward_filter(g, x.data<float>(), gy.data<float>(), b.data<float>());
  gpu.synchronize();
  EXPECT_EQ(gpu.to_host(a).to_vector(), gpu.to_host(b).to_vector());
}

// The registered conv2d kernels of the CUDA backend (depthwise dispatch and cuDNN, with the
// filter transposes and the padding plan) against the CPU backend.
void expect_backend_parity(const std::vector<ConvCase>& cases, uint64_t seed) {
  for (size_t i = 0; i < cases.size(); ++i) {
    const ConvCase& k = cases[i];
    ConvGraph cg;
    build(cg, k);
    const Feeds feeds = random_feeds(cg, seed + i);
    const std::vector<NodeId> outs{cg.y.id(), cg.dx.id(), cg.dw.id()};
    const auto cpu = evaluate(cg.g, outs, feeds, cpu_backend());
    const auto gpu = evaluate(cg.g, outs, feeds, cuda_backend());
    for (size_t o = 0; o < 3; ++o)
      EXPECT_LE(tensor_error(cpu[o], cuda_backend().to_host(gpu[o]), o == 2 ? kRtolFilter : kRtolWindow * 5), 1.0)
          << kOutputNames[o] << ", " << describe(k);
  }
}

TEST(CudaDepthwiseBackend, Conv2dFamilyMatchesTheCpuBackend) {
  AGILENN_SKIP_WITHOUT_GPU();
  expect_backend_parity(depthwise_cases(), 5000);
}

TEST(CudaConv2dCudnn, DenseAndGroupedMatchTheCpuBackend) {
  AGILENN_SKIP_WITHOUT_GPU();
  expect_backend_parity(cudnn_cases(), 6000);
}

}  // namespace
}  // namespace agilenn::testing
