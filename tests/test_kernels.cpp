// CPU kernels whose behaviour the gradient table cannot see: resampling, random masks,
// running statistics, index errors, and the chunked convolution path.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "engine/core/error.h"
#include "engine/ir/ops.h"
#include "engine/runtime/executor.h"
#include "kernels/shared/rounding.h"

namespace agilenn {
namespace {

using ::testing::HasSubstr;

Tensor ramp(const Shape& s, DType t, double scale = 1.0) {
  Tensor x = Tensor::zeros(s, t);
  for (int64_t i = 0; i < x.numel(); ++i) x.set_item(i, std::sin(0.37 * static_cast<double>(i)) * scale);
  return x;
}

// The host's float exp (kernels/shared/rounding.h) is the engine's own, computed in double
// and rounded once: over 2^20 points of [-104, 88.72] (results from 0 and subnormal to near
// FLT_MAX, whose log is 88.7228), every result is the float nearest e^x (in long double) unless e^x lies within
// 1e-12 of the midpoint of two floats, and a vector of eight lanes equals the scalar bit for
// bit. Outside the range and for inf and NaN it returns 0, inf and NaN.
TEST(Exp, FloatResultIsTheNearestFloatAndVectorsEqualTheScalar) {
  using Lanes [[gnu::vector_size(8 * sizeof(float))]] = float;
  constexpr int64_t kPoints = 1 << 20;
  int64_t near_midpoint = 0;
  for (int64_t i = 0; i < kPoints; i += 8) {
    Lanes x;
    for (int l = 0; l < 8; ++l) x[l] = static_cast<float>(-104.0 + 192.72 * static_cast<double>(i + l) / kPoints);
    const Lanes y = kernels::rn::exp(x);
    for (int l = 0; l < 8; ++l) {
      const float got = kernels::rn::exp(x[l]);
      ASSERT_EQ(std::bit_cast<uint32_t>(got), std::bit_cast<uint32_t>(y[l])) << "x = " << x[l];
      const long double exact = std::exp(static_cast<long double>(x[l]));
      const float below = std::nextafter(got, 0.0f), above = std::nextafter(got, INFINITY);
      const long double error = std::fabs(got - exact);
      const long double nearest_other = std::min(std::fabs(below - exact), std::fabs(above - exact));
      if (error <= nearest_other) continue;
      ++near_midpoint;
      EXPECT_LE(error - nearest_other, 1e-12L * exact) << "x = " << x[l];
    }
  }
  EXPECT_LE(near_midpoint, 2) << "results a midpoint away from the nearest float";
  EXPECT_EQ(kernels::rn::exp(-INFINITY), 0.0f);
  EXPECT_EQ(kernels::rn::exp(-200.0f), 0.0f);
  EXPECT_EQ(kernels::rn::exp(INFINITY), INFINITY);
  EXPECT_EQ(kernels::rn::exp(88.73f), INFINITY);
  EXPECT_TRUE(std::isnan(kernels::rn::exp(NAN)));
  EXPECT_EQ(kernels::rn::exp(0.0f), 1.0f);
}

// The CPU's fused loop runs two cheap instructions in a row as one pass where the second
// is the only reader of the first's result (kernels/cpu/elementwise.cpp). Every way the
// second can read it, a result read again later (not paired), a pair that writes the
// output, and transcendentals (never paired): each program equals its chain of registry
// ops bit for bit in float, over several blocks and a partial one.
TEST(FusedElementwise, PairedInstructionsEqualTheChainBitForBit) {
  const std::vector<std::vector<FusedStep>> programs = {
      {{"sub", 0, 1}, {"mul", 2, 1}, {"add", 3, 0}, {"clamp", 4, -1, -0.5, 0.5}},  // as the first operand, into y
      {{"broadcast_to", 1}, {"sub", 0, 2}, {"mul", 0, 3}},                          // as the second operand
      {{"sub", 0, 1}, {"mul", 2, 2}, {"add", 3, 0}, {"neg", 4}},                    // t·t, then a unary second
      {{"mul", 0, 1}, {"add", 2, 0}, {"maximum", 3, 2}, {"minimum", 4, 1}},         // t read again: not paired
      {{"sub", 0, 1}, {"exp", 2}, {"mul", 3, 1}, {"clamp_grad", 0, 4, -0.25, 0.25}},  // exp is never paired
  };
  for (size_t p = 0; p < programs.size(); ++p) {
    Graph g;
    const Shape shape{3, 337};
    std::vector<Value> in{ops::leaf(g, "x", shape, DType::f32), ops::leaf(g, "c", {337}, DType::f32)};
    const Value fused = ops::fused_elementwise(in, programs[p], shape);
    const Value chain = ops::fused_elementwise_reference(in, programs[p], shape);
    const auto r = evaluate(g, {fused.id(), chain.id()},
                            {{"x", ramp(shape, DType::f32, 1.5)}, {"c", ramp({337}, DType::f32, 0.75)}}, cpu_backend());
    EXPECT_EQ(r[0].to_vector(), r[1].to_vector()) << "program " << p;
  }
}

TEST(ResizeBilinear, HalfPixelCentresUpsampleByTwo) {
  // 1-D view of the rule: out[j] samples src = (j + 0.5)/2 - 0.5, clamped at the edges.
  Graph g;
  Value x = ops::leaf(g, "x", {1, 1, 2, 1}, DType::f64);
  Value y = ops::resize_bilinear(x, 1, 4);
  const auto r = evaluate(g, {y.id()}, {{"x", Tensor::from_vector({1, 1, 2, 1}, {0.0, 8.0}, DType::f64)}}, cpu_backend());
  // src = -0.25 -> 0 (clamped), 0.25 -> 2, 0.75 -> 6, 1.25 -> 8 (clamped)
  EXPECT_EQ(r[0].to_vector(), (std::vector<double>{0.0, 2.0, 6.0, 8.0}));
}

TEST(ResizeBilinear, SameSizeIsIdentityAndDownsampleAverages) {
  Graph g;
  Value x = ops::leaf(g, "x", {2, 4, 4, 3}, DType::f32);
  Value same = ops::resize_bilinear(x, 4, 4);
  Value half = ops::resize_bilinear(x, 2, 2);
  Tensor xv = ramp({2, 4, 4, 3}, DType::f32);
  const auto r = evaluate(g, {same.id(), half.id()}, {{"x", xv}}, cpu_backend());
  EXPECT_EQ(r[0].to_vector(), xv.to_vector());
  // Halving samples src = 2j + 0.5: the mean of each 2x2 block.
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t i = 0; i < 2; ++i)
      for (int64_t j = 0; j < 2; ++j)
        for (int64_t c = 0; c < 3; ++c) {
          double m = 0;
          for (int64_t a = 0; a < 2; ++a)
            for (int64_t b = 0; b < 2; ++b) m += xv.item(((n * 4 + 2 * i + a) * 4 + 2 * j + b) * 3 + c) / 4;
          EXPECT_NEAR(r[1].item(((n * 2 + i) * 2 + j) * 3 + c), m, 1e-6);
        }
}

TEST(ResizeBilinear, PaperUpsampling32To96KeepsConstantImages) {
  Graph g;
  Value x = ops::leaf(g, "x", {1, 32, 32, 3}, DType::f32);
  Value y = ops::resize_bilinear(x, 96, 96);
  Tensor xv = Tensor::zeros({1, 32, 32, 3}, DType::f32);
  for (int64_t i = 0; i < xv.numel(); ++i) xv.set_item(i, 0.25 * static_cast<double>(i % 3));
  const auto r = evaluate(g, {y.id()}, {{"x", xv}}, cpu_backend());
  for (int64_t i = 0; i < r[0].numel(); ++i) ASSERT_FLOAT_EQ(static_cast<float>(r[0].item(i)), 0.25f * static_cast<float>(i % 3));
}

TEST(Dropout, MaskIsScaledDeterministicAndChangesWithTheCounter) {
  Graph g;
  Value counter = ops::leaf(g, "step", {}, DType::i32);
  Value m = ops::dropout_mask(counter, {200, 100}, 0.3, 42, DType::f32);
  Executor ex(g, compile(g, {m.id()}), cpu_backend());
  const Tensor a = ex.run({{"step", Tensor::scalar(7, DType::i32)}})[0];
  const Tensor b = ex.run({{"step", Tensor::scalar(7, DType::i32)}})[0];
  const Tensor c = ex.run({{"step", Tensor::scalar(8, DType::i32)}})[0];
  EXPECT_EQ(a.to_vector(), b.to_vector());
  int64_t dropped = 0, differ = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    const double v = a.item(i);
    ASSERT_TRUE(v == 0.0 || std::abs(v - 1.0 / 0.7) < 1e-6) << v;
    dropped += v == 0.0;
    differ += v != c.item(i);
  }
  // 20000 Bernoulli(0.3) draws: mean 6000, sd ~65; 5 sd either side.
  EXPECT_NEAR(static_cast<double>(dropped), 6000.0, 325.0);
  EXPECT_GT(differ, 5000);  // an independent mask differs in ~42% of places
}

TEST(BatchNorm, TrainModeUpdatesRunningStatistics) {
  Graph g;
  Value x = ops::leaf(g, "x", {4, 2, 1, 2}, DType::f64);
  Value gamma = ops::fill(g, 1.0, {2}, DType::f64), beta = ops::fill(g, 0.0, {2}, DType::f64);
  Value rm = ops::leaf(g, "rm", {2}, DType::f64), rv = ops::leaf(g, "rv", {2}, DType::f64);
  auto bn = ops::batch_norm_train(x, gamma, beta, rm, rv, 0.99, 1e-3);
  Tensor xv = Tensor::zeros({4, 2, 1, 2}, DType::f64);
  for (int64_t i = 0; i < 16; ++i) xv.set_item(i, i % 2 ? 2.0 * static_cast<double>(i / 2) : 1.0);
  const auto r = evaluate(g, {bn.y.id(), bn.new_running_mean.id(), bn.new_running_var.id()},
                          {{"x", xv}, {"rm", Tensor::from_vector({2}, {1, 1}, DType::f64)},
                           {"rv", Tensor::from_vector({2}, {1, 1}, DType::f64)}}, cpu_backend());
  // Channel 0 is constant 1: mean 1, var 0. Channel 1 is 0,2,..,14: mean 7, biased var 21.
  EXPECT_NEAR(r[1].item(0), 0.99 * 1 + 0.01 * 1, 1e-12);
  EXPECT_NEAR(r[1].item(1), 0.99 * 1 + 0.01 * 7, 1e-12);
  EXPECT_NEAR(r[2].item(0), 0.99 * 1 + 0.01 * 0, 1e-12);
  EXPECT_NEAR(r[2].item(1), 0.99 * 1 + 0.01 * 21 * 8 / 7, 1e-12);  // unbiased for the moving average
  EXPECT_NEAR(r[0].item(1), (0 - 7) / std::sqrt(21 + 1e-3), 1e-12);
  EXPECT_NEAR(r[0].item(0), 0.0, 1e-12);
}

TEST(Indexing, OutOfRangeIndicesAreNamed) {
  Graph g;
  Value x = ops::leaf(g, "x", {3, 2}, DType::f32);
  Value idx = ops::leaf(g, "idx", {2}, DType::i32);
  Value y = ops::gather(x, idx, 0);
  Value labels = ops::leaf(g, "labels", {2}, DType::i32);
  Value oh = ops::one_hot(labels, 3, DType::f32);
  try {
    evaluate(g, {y.id()}, {{"x", Tensor::zeros({3, 2}, DType::f32)}, {"idx", Tensor::from_vector({2}, {0, 3}, DType::i32)}}, cpu_backend());
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("op 'gather'"));
    EXPECT_THAT(e.what(), HasSubstr("index 3"));
  }
  EXPECT_THROW(evaluate(g, {oh.id()}, {{"labels", Tensor::from_vector({2}, {-1, 0}, DType::i32)}}, cpu_backend()), Error);
}

TEST(Conv2d, ChunkedLargeConvolutionMatchesDirectSum) {
  // Large enough that im2col runs one image per chunk (the column buffer is bounded).
  const Shape xs{2, 64, 64, 128}, ws{3, 3, 128, 3};
  Graph g;
  Value x = ops::leaf(g, "x", xs, DType::f32);
  Value w = ops::leaf(g, "w", ws, DType::f32);
  ops::Conv2dOptions o;
  o.padding = ops::Padding::same;
  Value y = ops::conv2d(x, w, o);
  Tensor xv = ramp(xs, DType::f32), wv = ramp(ws, DType::f32, 0.1);
  const Tensor r = evaluate(g, {y.id()}, {{"x", xv}, {"w", wv}}, cpu_backend())[0];
  for (int64_t n : {0, 1})
    for (int64_t oh : {0, 31, 63})
      for (int64_t ow : {0, 17, 63})
        for (int64_t co = 0; co < 3; ++co) {
          double s = 0;
          for (int64_t kh = 0; kh < 3; ++kh)
            for (int64_t kw = 0; kw < 3; ++kw) {
              const int64_t ih = oh - 1 + kh, iw = ow - 1 + kw;
              if (ih < 0 || ih >= 64 || iw < 0 || iw >= 64) continue;
              for (int64_t ci = 0; ci < 128; ++ci)
                s += xv.item(((n * 64 + ih) * 64 + iw) * 128 + ci) * wv.item(((kh * 3 + kw) * 128 + ci) * 3 + co);
            }
          // 1152 float32 products: 1e-4 of the sum of magnitudes bounds the rounding.
          EXPECT_NEAR(r.item(((n * 64 + oh) * 64 + ow) * 3 + co), s, 1e-3) << n << "," << oh << "," << ow;
        }
}

}  // namespace
}  // namespace agilenn
