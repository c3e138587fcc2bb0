// Differentiating gradients again: third order, and Hessians of known closed form.
#include <gtest/gtest.h>

#include <cmath>

#include "engine/autodiff/grad.h"
#include "engine/runtime/executor.h"

namespace agilenn {
namespace {

TEST(HigherOrder, ThirdDerivativeOfTanh) {
  Graph g;
  Value x = ops::leaf(g, "x", {5}, DType::f64);
  Value y = ops::sum(ops::tanh(x));
  Value d1 = grad(y, {x})[0];
  Value d2 = grad(ops::sum(d1), {x})[0];
  Value d3 = grad(ops::sum(d2), {x})[0];
  Tensor xv = Tensor::from_vector({5}, {-1.2, -0.3, 0.0, 0.4, 1.5}, DType::f64);
  const auto r = evaluate(g, {d1.id(), d2.id(), d3.id()}, {{"x", xv}}, cpu_backend());
  for (int64_t i = 0; i < 5; ++i) {
    const double t = std::tanh(xv.item(i)), s = 1 - t * t;
    EXPECT_NEAR(r[0].item(i), s, 1e-14);
    EXPECT_NEAR(r[1].item(i), -2 * t * s, 1e-14);
    EXPECT_NEAR(r[2].item(i), -2 * s * s + 4 * t * t * s, 1e-14);
  }
}

TEST(HigherOrder, HessianOfSoftmaxCrossEntropyIsDiagMinusOuter) {
  // For L = CE(z, y): dL/dz = p - onehot(y); the Hessian is diag(p) - p pᵀ.
  Graph g;
  Value z = ops::leaf(g, "z", {1, 4}, DType::f64);
  Value y = ops::leaf(g, "y", {1}, DType::i32);
  Value v = ops::leaf(g, "v", {1, 4}, DType::f64);
  Value loss = ops::sum(ops::cross_entropy(z, y));
  Value gz = grad(loss, {z})[0];
  Value hv = grad(ops::sum(gz * v), {z})[0];
  Tensor zv = Tensor::from_vector({1, 4}, {0.1, -0.7, 1.3, 0.2}, DType::f64);
  Tensor vv = Tensor::from_vector({1, 4}, {1.0, -2.0, 0.5, 3.0}, DType::f64);
  const auto r = evaluate(g, {gz.id(), hv.id()}, {{"z", zv}, {"y", Tensor::from_vector({1}, {2}, DType::i32)}, {"v", vv}}, cpu_backend());
  double p[4], s = 0, pv = 0;
  for (int i = 0; i < 4; ++i) s += std::exp(zv.item(i));
  for (int i = 0; i < 4; ++i) {
    p[i] = std::exp(zv.item(i)) / s;
    pv += p[i] * vv.item(i);
  }
  for (int i = 0; i < 4; ++i) {
    EXPECT_NEAR(r[0].item(i), p[i] - (i == 2), 1e-14);
    EXPECT_NEAR(r[1].item(i), p[i] * vv.item(i) - p[i] * pv, 1e-14);
  }
}

TEST(HigherOrder, MixedSecondDerivativeThroughConvolution) {
  // L = sum(conv(x, w)²)/2 is quadratic in x for fixed w; d/dw <dL/dx, v> is checked
  // against the closed form conv_bwd_filter(v, conv(x,w)) + conv_bwd_filter(x, conv(v,w)).
  Graph g;
  Value x = ops::leaf(g, "x", {1, 5, 5, 2}, DType::f64);
  Value w = ops::leaf(g, "w", {3, 3, 2, 3}, DType::f64);
  Value v = ops::leaf(g, "v", {1, 5, 5, 2}, DType::f64);
  ops::Conv2dOptions o;
  o.padding = ops::Padding::same;
  Value y = ops::conv2d(x, w, o);
  Value loss = ops::sum(y * y) * 0.5;
  Value gx = grad(loss, {x})[0];
  Value mixed = grad(ops::sum(gx * v), {w})[0];
  Value yv = ops::conv2d(v, w, o);
  const Attrs& a = y.node().attrs;
  Value closed = ops::conv2d_backward_filter(v, y, a, {3, 3, 2, 3}) + ops::conv2d_backward_filter(x, yv, a, {3, 3, 2, 3});
  Feeds f;
  for (const char* name : {"x", "w", "v"}) {
    const Shape s = g.node(g.find_leaf(name)).shape;
    Tensor t = Tensor::zeros(s, DType::f64);
    for (int64_t i = 0; i < t.numel(); ++i) t.set_item(i, std::sin(1.3 * static_cast<double>(i) + name[0]));
    f[name] = t;
  }
  const auto r = evaluate(g, {mixed.id(), closed.id()}, f, cpu_backend());
  for (int64_t i = 0; i < r[0].numel(); ++i) EXPECT_NEAR(r[0].item(i), r[1].item(i), 1e-12);
}

TEST(HigherOrder, StopGradientBlocksEveryOrder) {
  // y = sg(x²)·x: dy/dx = sg(x²) = x² (not 3x²), d²y/dx² = 0 (not 6x).
  Graph g;
  Value x = ops::leaf(g, "x", {}, DType::f64);
  Value y = ops::stop_gradient(x * x) * x;
  Value d1 = grad(y, {x})[0];
  Value d2 = grad(d1, {x})[0];
  const auto r = evaluate(g, {d1.id(), d2.id()}, {{"x", Tensor::scalar(3.0, DType::f64)}}, cpu_backend());
  EXPECT_DOUBLE_EQ(r[0].item(0), 9.0);
  EXPECT_DOUBLE_EQ(r[1].item(0), 0.0);
}

}  // namespace
}  // namespace agilenn
