// The depthwise convolution's twin (the CUDA kernels' per-element math and reduction
// plan run on the host, kernels/shared/depthwise_conv2d.h) against the CPU backend, in
// every build.
#include <gtest/gtest.h>

#include "tests/depthwise_cases.h"

namespace agilenn::testing {
namespace {

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

// The twin adds each window's taps in tap order, as the CPU backend does: where there is
// no channel multiplier to sum over first, their float32 forward passes and data gradients
// agree bit for bit (whichever of the CPU's loops the channel count picks), and the
// CPU's float64 ones agree to float32 rounding.
TEST(CudaDepthwiseTwin, ForwardAndDataGradientEqualTheCpuBitForBitWithoutAMultiplier) {
  size_t checked = 0;
  for (size_t i = 0; i < depthwise_cases().size(); ++i) {
    const ConvCase& k = depthwise_cases()[i];
    if (k.m != 1) continue;
    ConvGraph cg, cg64;
    build(cg, k);
    build(cg64, k, DType::f64);
    const Feeds feeds = random_feeds(cg, 3000 + i);
    const Feeds feeds64 = feeds_as(feeds, DType::f64);
    const auto cpu = evaluate(cg.g, {cg.y.id(), cg.dx.id()}, feeds, cpu_backend());
    const auto cpu64 = evaluate(cg64.g, {cg64.y.id(), cg64.dx.id()}, feeds64, cpu_backend());
    const auto twin = run_twin(cg, feeds);
    for (size_t o = 0; o < 2; ++o) {
      EXPECT_EQ(cpu[o].to_vector(), twin[o].to_vector()) << kOutputNames[o] << ", " << describe(k);
      EXPECT_LE(tensor_error(cpu64[o], twin[o], kRtolWindow), 1.0) << kOutputNames[o] << " (f64), " << describe(k);
    }
    ++checked;
  }
  EXPECT_GE(checked, 10u);
}

// Channels [c0, c0 + width) of t, its last axis.
Tensor channel_slice(const Tensor& t, int64_t c0, int64_t width) {
  Shape shape = t.shape();
  const int64_t c = shape.back();
  shape.back() = width;
  std::vector<double> v = t.to_vector(), out;
  for (int64_t i = 0; i < t.numel() / c; ++i)
    out.insert(out.end(), v.begin() + i * c + c0, v.begin() + i * c + c0 + width);
  return Tensor::from_vector(shape, out, t.dtype());
}

// A depthwise convolution's channels are independent, so a slice of 8 of them run alone
// (the CPU's flat loops) must give the same bits as in a wide run (its register loops,
// 3×3 or not), in float32 and float64: forward, data and filter gradients.
TEST(DepthwiseCpu, WideChannelLoopsEqualTheFlatOnesBitForBit) {
  constexpr int64_t kSlice = 8;
  size_t checked = 0;
  for (size_t i = 0; i < depthwise_cases().size(); ++i) {
    const ConvCase& k = depthwise_cases()[i];
    if (k.m != 1 || k.c < 32 || k.c % kSlice != 0) continue;
    for (DType dtype : {DType::f32, DType::f64}) {
      ConvGraph wide;
      build(wide, k, dtype);
      const Feeds feeds = feeds_as(random_feeds(wide, 4000 + i), dtype);
      const auto all = evaluate(wide.g, {wide.y.id(), wide.dx.id(), wide.dw.id()}, feeds, cpu_backend());
      for (int64_t c0 = 0; c0 < k.c; c0 += kSlice) {
        ConvCase narrow_case = k;
        narrow_case.c = kSlice;
        ConvGraph narrow;
        build(narrow, narrow_case, dtype);
        Feeds sliced;
        for (const auto& [name, t] : feeds) sliced[name] = channel_slice(t, c0, kSlice);
        const auto part = evaluate(narrow.g, {narrow.y.id(), narrow.dx.id(), narrow.dw.id()}, sliced, cpu_backend());
        for (size_t o = 0; o < 3; ++o)
          EXPECT_EQ(channel_slice(all[o], c0, kSlice).to_vector(), part[o].to_vector())
              << kOutputNames[o] << " " << dtype_name(dtype) << ", channels from " << c0 << ", " << describe(k);
      }
    }
    ++checked;
  }
  EXPECT_GE(checked, 4u);
}

// The twin's filter gradient does not depend on how the pixels are chunked beyond
// rounding: check it against a float64 sum as well, on the multi-chunk geometries.
TEST(CudaDepthwiseTwin, FilterGradientAgreesWithAFloat64Sum) {
  for (size_t i = 0; i < depthwise_cases().size(); ++i) {
    const ConvCase& k = depthwise_cases()[i];
    ConvGraph cg;
    build(cg, k);
    const kernels::DepthwiseGeometry g = geometry(cg);
    if (kernels::depthwise_filter_chunks(g) < 2) continue;
    const Feeds feeds = random_feeds(cg, 2000 + i);
    ConvGraph cg64;
    build(cg64, k, DType::f64);
    const Feeds feeds64 = feeds_as(feeds, DType::f64);
    const auto cpu64 = evaluate(cg64.g, {cg64.dw.id()}, feeds64, cpu_backend());
    const auto twin = run_twin(cg, feeds);
    EXPECT_LE(tensor_error(cpu64[0], twin[2], kRtolFilter), 1.0) << describe(k);
  }
}

}  // namespace
}  // namespace agilenn::testing
