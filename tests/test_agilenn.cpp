// The AgileNN step: quadrature, integrated gradients, the fused ops against their
// decompositions, the quantizer, and the whole step's gradients in float64.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <set>

#include "engine/autodiff/fused_vjps.h"
#include "engine/autodiff/grad.h"
#include "engine/core/error.h"
#include "engine/models/agilenn.h"
#include "engine/runtime/executor.h"
#include "engine/train/step.h"
#include "engine/xai/channel_remap.h"
#include "engine/xai/integrated_gradients.h"
#include "tests/gradcheck.h"
#include "tests/test_util.h"

namespace agilenn {
namespace {

using testing::random_tensor;
using testing::scaled_error;

double max_abs(const Tensor& t) {
  double m = 0;
  for (double v : t.to_vector()) m = std::max(m, std::abs(v));
  return m;
}

// ---- quadrature

TEST(Quadrature, WeightsSumToOneAndTrapezoidTwoIsTheSeed) {
  for (auto rule : {xai::IgRule::left_riemann, xai::IgRule::right_riemann, xai::IgRule::middle_riemann,
                    xai::IgRule::trapezoid, xai::IgRule::gauss_legendre})
    for (int m : {2, 3, 8}) {
      const xai::Quadrature q = xai::quadrature(rule, m);
      double s = 0;
      for (double w : q.weights) s += w;
      EXPECT_NEAR(s, 1.0, 1e-14) << xai::ig_rule_name(rule) << " m=" << m;
    }
  const xai::Quadrature t = xai::quadrature(xai::IgRule::trapezoid, 2);
  EXPECT_EQ(t.alphas, (std::vector<double>{0.0, 1.0}));
  EXPECT_EQ(t.weights, (std::vector<double>{0.5, 0.5}));
}

TEST(Quadrature, GaussLegendreIsExactForDegree2mMinus1) {
  // ∫₀¹ x⁹ dx = 1/10 with 5 nodes; the nodes lie strictly inside (0, 1).
  const xai::Quadrature q = xai::quadrature(xai::IgRule::gauss_legendre, 5);
  double s = 0;
  for (size_t k = 0; k < 5; ++k) {
    s += q.weights[k] * std::pow(q.alphas[k], 9);
    EXPECT_GT(q.alphas[k], 0.0);
    EXPECT_LT(q.alphas[k], 1.0);
  }
  EXPECT_NEAR(s, 0.1, 1e-14);
  EXPECT_THROW(xai::parse_ig_rule("simpson"), Error);
  EXPECT_EQ(xai::parse_ig_rule("gauss-legendre"), xai::IgRule::gauss_legendre);
}

// ---- integrated gradients on a small frozen net

// A smooth frozen net of the tiny preset's reference body, with random weights.
struct IgFixture {
  Graph g;
  nn::ParamSet params;
  nn::Scope root{g, params, false, DType::f64};
  const models::AgileNNPreset& p = models::preset("tiny");
  static constexpr int64_t kClasses = 4, kBatch = 3;
  Value f = ops::leaf(g, "f", {kBatch, 4, 4, 10}, DType::f64);
  Value labels = ops::leaf(g, "labels", {kBatch}, DType::i32);
  xai::NetFn net = [this](const Value& x) {
    return models::reference_body(root.child("ref").frozen(), x, p, kClasses);
  };

  Feeds feeds(uint64_t seed) {
    Feeds fd;
    nn::TensorMap values = params.initialise(seed, DType::f64);
    for (auto& [name, t] : values) fd[name] = t;
    fd["f"] = random_tensor({kBatch, 4, 4, 10}, DType::f64, seed + 1, 0.0, 2.0);
    fd["labels"] = Tensor::from_vector({kBatch}, {0, 3, 1}, DType::i32);
    return fd;
  }
};

TEST(IntegratedGradients, TrapezoidTwoReproducesTheSeedFormulaExactly) {
  IgFixture fx;
  xai::IgOptions opt;  // m = 2, trapezoid
  const xai::IgTerms ig = xai::integrated_gradients(fx.f, fx.labels, fx.net, opt);
  Value seed_i = ops::abs(ig.delta * ig.a);
  // The seed: I = |½(G(0) + G(f)) ⊙ f| with G(x) = ∂ mean CE(E(x), y) / ∂x.
  auto g_at = [&](const Value& x) { return grad(ops::mean(ops::cross_entropy(fx.net(x), fx.labels)), {x})[0]; };
  Value zeros = ops::fill(fx.g, 0.0, fx.f.shape(), DType::f64);
  Value want = ops::abs((g_at(zeros) + g_at(fx.f)) * 0.5 * fx.f);
  const auto r = evaluate(fx.g, {seed_i.id(), want.id()}, fx.feeds(3), cpu_backend());
  EXPECT_LE(scaled_error(r[0], r[1], 1e-12, 1e-15), 1.0);
  EXPECT_GT(max_abs(r[1]), 1e-6);  // not vacuous
}

TEST(IntegratedGradients, ZeroPointTableGivesTheSameAttributions) {
  IgFixture fx;
  xai::IgOptions opt;
  Value table = xai::zero_point_gradients(fx.g, fx.net, {4, 4, 10}, IgFixture::kClasses, DType::f64);
  const xai::IgTerms direct = xai::integrated_gradients(fx.f, fx.labels, fx.net, opt);
  const xai::IgTerms tabled = xai::integrated_gradients(fx.f, fx.labels, fx.net, opt, {}, table);
  opt.chunk = 2;  // the moving points in batches of two rows
  const xai::IgTerms chunked = xai::integrated_gradients(fx.f, fx.labels, fx.net, opt);
  const auto r = evaluate(fx.g, {direct.a.id(), tabled.a.id(), chunked.a.id()}, fx.feeds(5), cpu_backend());
  EXPECT_LE(scaled_error(r[0], r[1], 1e-12, 1e-15), 1.0);
  EXPECT_LE(scaled_error(r[0], r[2], 1e-12, 1e-15), 1.0);
}

TEST(IntegratedGradients, CompletenessErrorShrinksWithMoreSteps) {
  // Σ_elements (f − b) ⊙ A ≈ (ce_i(f) − ce_i(b)) / B for each sample: IG's completeness.
  double previous = INFINITY;
  for (int m : {2, 4, 16, 64}) {
    IgFixture fx;
    xai::IgOptions opt;
    opt.steps = m;
    opt.rule = xai::IgRule::gauss_legendre;
    const xai::IgTerms ig = xai::integrated_gradients(fx.f, fx.labels, fx.net, opt);
    Value attributed = ops::sum(ig.delta * ig.a, {1, 2, 3});
    Value zeros = ops::fill(fx.g, 0.0, fx.f.shape(), DType::f64);
    Value change = (ops::cross_entropy(fx.net(fx.f), fx.labels) - ops::cross_entropy(fx.net(zeros), fx.labels)) *
                   (1.0 / IgFixture::kBatch);
    const auto r = evaluate(fx.g, {attributed.id(), change.id()}, fx.feeds(7), cpu_backend());
    double err = 0;
    for (int64_t i = 0; i < IgFixture::kBatch; ++i) err = std::max(err, std::abs(r[0].item(i) - r[1].item(i)));
    EXPECT_LT(err, previous) << "m=" << m;
    previous = err;
    if (m == 64) {
      // Gauss–Legendre with 64 nodes on a smooth path: error near round-off.
      EXPECT_LT(err, 1e-9 * (1 + max_abs(r[1])));
      EXPECT_GT(max_abs(r[1]), 1e-4);  // the outputs do change along the path
    }
  }
}

// ---- fused ops equal their decompositions, in value and to second order

struct FusedPair {
  std::string name;
  std::vector<Shape> shapes;
  std::function<Value(const std::vector<Value>&)> fused, reference;
  std::vector<std::pair<double, double>> ranges;
  // Inputs the value does not depend on smoothly (derivatives identically zero).
  std::vector<size_t> flat_inputs = {};
  // Draw floats from {±0.5, ±1} only, so max/min see many exact ties.
  bool ties = false;
  // int32 inputs (shape, classes), passed after the floating ones and not differentiated.
  std::vector<std::pair<Shape, int>> labels = {};
};

class FusedOpTest : public ::testing::TestWithParam<int> {};

std::vector<FusedPair> fused_pairs() {
  return {
      {"quantize",
       {{2, 3, 5}, {6}},
       [](auto& v) { return ops::quantize(v[0], v[1]); },
       [](auto& v) { return ops::quantize_reference(v[0], v[1]); },
       {{0.0, 6.0}, {0.3, 5.7}}},
      {"softmax_cross_entropy",
       {{6, 7}},
       [](auto& v) { return ops::softmax_cross_entropy(v[0], v[1]); },
       [](auto& v) { return ops::cross_entropy_reference(v[0], v[1]); },
       {{-3.0, 3.0}},
       {},
       false,
       {{{6}, 7}}},
      {"quantize_backward_wrt0",
       {{2, 3, 5}, {6}, {2, 3, 5}},
       [](auto& v) { return ops::quantize_backward(v[0], v[1], v[2], 0); },
       [](auto& v) { return quantize_backward_reference(v[0], v[1], v[2], 0); },
       {{0.0, 6.0}, {0.3, 5.7}, {-1.0, 1.0}}},
      {"quantize_backward_wrt1",
       {{2, 3, 5}, {6}, {2, 3, 5}},
       [](auto& v) { return ops::quantize_backward(v[0], v[1], v[2], 1); },
       [](auto& v) { return quantize_backward_reference(v[0], v[1], v[2], 1); },
       {{0.0, 6.0}, {0.3, 5.7}, {-1.0, 1.0}}},
      {"attribution_stats",
       {{2, 3, 4, 6}, {2, 3, 4, 6}},
       [](auto& v) { return ops::attribution_stats(v[0], v[1], 2); },
       [](auto& v) { return ops::attribution_stats_reference(v[0], v[1], 2); },
       {{-1.0, 1.0}, {-1.0, 1.0}}},
      // Exact ties at the max and the min: the fused vjp shares g2 among them as the
      // decomposition's max/min vjps do.
      {"attribution_stats_ties",
       {{3, 2, 3, 5}, {3, 2, 3, 5}},
       [](auto& v) { return ops::attribution_stats(v[0], v[1], 2); },
       [](auto& v) { return ops::attribution_stats_reference(v[0], v[1], 2); },
       {{-1.0, 1.0}, {-1.0, 1.0}},
       {},
       true},
      // The fused vjp as an op of its own (δ, a, g): a value linear in the other factor
      // and in g, so its derivatives w.r.t. the factor it differentiates are zero.
      {"attribution_stats_backward_wrt0",
       {{2, 3, 4, 6}, {2, 3, 4, 6}, {2, 3}},
       [](auto& v) { return ops::attribution_stats_backward(v[0], v[1], v[2], 2, 0); },
       [](auto& v) { return attribution_stats_backward_reference(v[0], v[1], v[2], 2, 0); },
       {{-1.0, 1.0}, {-1.0, 1.0}, {-1.0, 1.0}},
       {0}},
      {"attribution_stats_backward_wrt1",
       {{2, 3, 4, 6}, {2, 3, 4, 6}, {2, 3}},
       [](auto& v) { return ops::attribution_stats_backward(v[0], v[1], v[2], 2, 1); },
       [](auto& v) { return attribution_stats_backward_reference(v[0], v[1], v[2], 2, 1); },
       {{-1.0, 1.0}, {-1.0, 1.0}, {-1.0, 1.0}},
       {1}},
      {"attribution_stats_backward_ties",
       {{3, 2, 3, 5}, {3, 2, 3, 5}, {3, 3}},
       [](auto& v) { return ops::attribution_stats_backward(v[0], v[1], v[2], 2, 1); },
       [](auto& v) { return attribution_stats_backward_reference(v[0], v[1], v[2], 2, 1); },
       {{-1.0, 1.0}, {-1.0, 1.0}, {-1.0, 1.0}},
       {1},
       true},
  };
}

Tensor tie_prone(const Tensor& t) {
  Tensor r = t.clone();
  for (int64_t i = 0; i < r.numel(); ++i) r.set_item(i, (r.item(i) < 0 ? -0.5 : 0.5) * (std::abs(r.item(i)) < 0.5 ? 1 : 2));
  return r;
}

TEST_P(FusedOpTest, ValuesAndFirstAndSecondOrderGradientsMatchTheDecomposition) {
  const FusedPair fp = fused_pairs()[static_cast<size_t>(GetParam())];
  Graph g;
  std::vector<Value> xs, directions;
  Feeds feeds;
  for (size_t i = 0; i < fp.shapes.size(); ++i) {
    const std::string name = "x" + std::to_string(i), dir = "v" + std::to_string(i);
    xs.push_back(ops::leaf(g, name, fp.shapes[i], DType::f64));
    directions.push_back(ops::leaf(g, dir, fp.shapes[i], DType::f64));
    feeds[name] = random_tensor(fp.shapes[i], DType::f64, 40 + i, fp.ranges[i].first, fp.ranges[i].second);
    if (fp.ties) feeds[name] = tie_prone(feeds[name]);
    feeds[dir] = random_tensor(fp.shapes[i], DType::f64, 50 + i);
  }
  std::vector<Value> args = xs;
  for (size_t i = 0; i < fp.labels.size(); ++i) {
    const auto& [shape, classes] = fp.labels[i];
    const std::string name = "l" + std::to_string(i);
    args.push_back(ops::leaf(g, name, shape, DType::i32));
    Tensor l = Tensor::zeros(shape, DType::i32);
    for (int64_t j = 0; j < l.numel(); ++j) l.set_item(j, static_cast<double>((j * 5 + 3) % classes));
    feeds[name] = l;
  }
  // For each implementation: value, gradient of sum(y · probe), and the HVP along v.
  std::vector<std::vector<NodeId>> outs(2);
  for (int which = 0; which < 2; ++which) {
    Value y = (which == 0 ? fp.fused : fp.reference)(args);
    Value probe = ops::leaf(g, "probe" + std::to_string(which), y.shape(), DType::f64);
    feeds["probe" + std::to_string(which)] = random_tensor(y.shape(), DType::f64, 60);
    std::vector<Value> gs = grad(ops::sum(y * probe), xs);
    Value inner;
    for (size_t i = 0; i < xs.size(); ++i) {
      Value t = ops::sum(gs[i] * directions[i]);
      inner = inner.valid() ? inner + t : t;
    }
    std::vector<Value> hs = grad(inner, xs);
    outs[static_cast<size_t>(which)].push_back(y.id());
    for (const Value& v : gs) outs[static_cast<size_t>(which)].push_back(v.id());
    for (const Value& v : hs) outs[static_cast<size_t>(which)].push_back(v.id());
  }
  const auto fused = evaluate(g, outs[0], feeds, cpu_backend());
  const auto reference = evaluate(g, outs[1], feeds, cpu_backend());
  for (size_t i = 0; i < fused.size(); ++i) {
    EXPECT_LE(scaled_error(fused[i], reference[i], 1e-12, 1e-12 * (1 + max_abs(reference[i]))), 1.0)
        << fp.name << " output " << i;
    if (i == 0) continue;
    const size_t input = (i - 1) % xs.size();
    if (std::find(fp.flat_inputs.begin(), fp.flat_inputs.end(), input) != fp.flat_inputs.end()) {
      EXPECT_EQ(max_abs(reference[i]), 0.0) << fp.name << " output " << i;
      continue;
    }
    EXPECT_GT(max_abs(reference[i]), 0.0) << fp.name << " output " << i << " is trivially zero";
  }
}

INSTANTIATE_TEST_SUITE_P(Fused, FusedOpTest, ::testing::Range(0, static_cast<int>(fused_pairs().size())),
                         [](const ::testing::TestParamInfo<int>& p) {
                           return fused_pairs()[static_cast<size_t>(p.param)].name;
                         });

// The fused vjp repeats the decomposition's float operations in its order, so on the CPU
// the two gradients agree bit for bit in float32 (the e2e runs are calibrated on the
// decomposition's numbers), ties or not.
TEST(FusedAttributionStats, Float32GradientsEqualTheDecompositionsBitForBit) {
  for (bool ties : {false, true}) {
    Graph g;
    const Shape s{4, 3, 5, 7};
    Value d = ops::leaf(g, "d", s, DType::f32), a = ops::leaf(g, "a", s, DType::f32);
    Value probe = ops::leaf(g, "probe", {4, 3}, DType::f32);
    std::vector<Value> fused = grad(ops::sum(ops::attribution_stats(d, a, 3) * probe), {d, a});
    std::vector<Value> ref = grad(ops::sum(ops::attribution_stats_reference(d, a, 3) * probe), {d, a});
    Feeds f{{"d", random_tensor(s, DType::f64, 1)}, {"a", random_tensor(s, DType::f64, 2)},
            {"probe", random_tensor({4, 3}, DType::f32, 3, -2, 2)}};
    if (ties) f["d"] = tie_prone(f["d"]), f["a"] = tie_prone(f["a"]);
    f["d"] = f["d"].to(DType::f32);
    f["a"] = f["a"].to(DType::f32);
    const auto r = evaluate(g, {fused[0].id(), fused[1].id(), ref[0].id(), ref[1].id()}, f, cpu_backend());
    for (int k = 0; k < 2; ++k) {
      EXPECT_GT(max_abs(r[static_cast<size_t>(k)]), 0.0);
      EXPECT_EQ(r[static_cast<size_t>(k)].to_vector(), r[static_cast<size_t>(k) + 2].to_vector())
          << (k ? "d/da" : "d/ddelta") << (ties ? " with ties" : "");
    }
  }
}

// A sample whose attributions are all zero (δ = 0, or A = 0: e.g. features that ReLU6
// zeroed everywhere) has Σ_c P = 0 and a disorder numerator of 0. Both losses divide by
// Σ_c P + 1e-9, so the sample contributes 0 to L_dis (0/0 = NaN without the ε, which stops
// training) and s = 0 to the skewness; the other samples' terms are as without the ε
// (to float rounding), and no gradient is NaN. Fused op and decomposition alike.
TEST(AttributionLosses, ZeroAttributionsGiveFiniteLossesAndGradients) {
  const Shape s{3, 2, 4, 5};  // sample 0: δ = 0; sample 1: ordinary; sample 2: A = 0
  const int64_t k = 2, per_sample = 2 * 4 * 5;
  for (DType dtype : {DType::f32, DType::f64})
    for (bool fused : {true, false}) {
      Graph g;
      Value d = ops::leaf(g, "d", s, dtype), a = ops::leaf(g, "a", s, dtype);
      const xai::AttributionLosses att = xai::attribution_losses({d, a}, k, 0.8, fused);
      std::vector<Value> grads = grad(att.skew_loss + att.disorder_loss, {d, a});
      Tensor dv = random_tensor(s, DType::f64, 11), av = random_tensor(s, DType::f64, 12);
      for (int64_t i = 0; i < per_sample; ++i) dv.set_item(i, 0.0), av.set_item(2 * per_sample + i, 0.0);
      const auto r = evaluate(g, {att.skewness.id(), att.skew_loss.id(), att.disorder_loss.id(), grads[0].id(),
                                  grads[1].id()},
                              {{"d", dv.to(dtype)}, {"a", av.to(dtype)}}, cpu_backend());
      const std::string what = std::string(fused ? "fused" : "decomposition") + " " + dtype_name(dtype);
      // Sample 1 by hand, in double.
      double local = 0, total = 0, worst_remote = 0, weakest_local = INFINITY;
      for (int64_t i = 0; i < per_sample; ++i) {
        const double v = std::abs(dv.item(per_sample + i) * av.item(per_sample + i));
        total += v;
        if (i % 5 < k) local += v, weakest_local = std::min(weakest_local, v);
        else worst_remote = std::max(worst_remote, v);
      }
      total += 1e-9;
      const double tol = dtype == DType::f32 ? 1e-5 : 1e-12;
      EXPECT_EQ(r[0].item(0), 0.0) << what;
      EXPECT_EQ(r[0].item(2), 0.0) << what;
      EXPECT_NEAR(r[0].item(1), local / total, tol) << what;
      EXPECT_NEAR(r[1].item(0), (0.8 + std::max(0.8 - local / total, 0.0) + 0.8) / 3, tol) << what;
      ASSERT_TRUE(std::isfinite(r[2].item(0))) << what << ": L_dis is " << r[2].item(0);
      EXPECT_NEAR(r[2].item(0), std::max((worst_remote - weakest_local) / total, 0.0) / 3, tol) << what;
      for (int j = 3; j < 5; ++j) {
        const Tensor& gt = r[static_cast<size_t>(j)];
        for (int64_t i = 0; i < gt.numel(); ++i) ASSERT_TRUE(std::isfinite(gt.item(i))) << what << " element " << i;
        // The zero samples' attributions |δ·A| sit at the kink of |·|: no gradient reaches them.
        for (int64_t i = 0; i < per_sample; ++i) {
          EXPECT_EQ(gt.item(i), 0.0) << what;
          EXPECT_EQ(gt.item(2 * per_sample + i), 0.0) << what;
        }
        EXPECT_GT(max_abs(gt), 0.0) << what;
      }
    }
}

// As for attribution_stats: the fused vjp repeats the decomposition's float operations,
// the centroids' sums blocked as the CPU's sum over leading axes blocks them.
TEST(FusedQuantize, Float32GradientsEqualTheDecompositionsBitForBit) {
  for (const Shape& s : {Shape{4, 5, 6, 3}, Shape{7}, Shape{2, 1000}}) {
    Graph g;
    Value x = ops::leaf(g, "x", s, DType::f32), raw = ops::leaf(g, "raw", {8}, DType::f32);
    Value probe = ops::leaf(g, "probe", s, DType::f32);
    Value c = ops::sigmoid(raw) * 6.0;
    std::vector<Value> fused = grad(ops::sum(ops::quantize(x, c) * probe), {x, raw});
    std::vector<Value> ref = grad(ops::sum(ops::quantize_reference(x, c) * probe), {x, raw});
    Feeds f{{"x", random_tensor(s, DType::f32, 1, -0.5, 6.5)}, {"raw", random_tensor({8}, DType::f32, 2, -3, 3)},
            {"probe", random_tensor(s, DType::f32, 3)}};
    const auto r = evaluate(g, {fused[0].id(), fused[1].id(), ref[0].id(), ref[1].id()}, f, cpu_backend());
    for (int k = 0; k < 2; ++k) {
      EXPECT_GT(max_abs(r[static_cast<size_t>(k)]), 0.0);
      EXPECT_EQ(r[static_cast<size_t>(k)].to_vector(), r[static_cast<size_t>(k) + 2].to_vector())
          << (k ? "d/draw" : "d/dx") << " " << shape_str(s);
    }
  }
}

// The fused forward does the CPU log_softmax kernel's float operations, and its vjp is the
// decomposition's with a sum of one nonzero term folded: values, gradients and
// Hessian-vector products equal the decomposition's bit for bit in float32 (the e2e runs,
// which differentiate cross-entropy twice through the IG, are calibrated on them).
TEST(FusedCrossEntropy, Float32ValuesAndTwoOrdersEqualTheDecompositionBitForBit) {
  Graph g;
  Value x = ops::leaf(g, "x", {33, 10}, DType::f32), labels = ops::leaf(g, "labels", {33}, DType::i32);
  Value v = ops::leaf(g, "v", {33, 10}, DType::f32);
  std::vector<NodeId> outs[2];
  for (int which = 0; which < 2; ++which) {
    Value y = which == 0 ? ops::softmax_cross_entropy(x, labels) : ops::cross_entropy_reference(x, labels);
    Value gx = grad(ops::mean(y), {x})[0];
    Value hv = grad(ops::sum(ops::tanh(gx * 50.0) * v), {x})[0];
    outs[which] = {y.id(), gx.id(), hv.id()};
  }
  Tensor l = Tensor::zeros({33}, DType::i32);
  for (int64_t i = 0; i < 33; ++i) l.set_item(i, static_cast<double>((i * 7) % 10));
  const Feeds f{{"x", random_tensor({33, 10}, DType::f32, 1, -8, 8)},
                {"labels", l},
                {"v", random_tensor({33, 10}, DType::f32, 2)}};
  const auto fused = evaluate(g, outs[0], f, cpu_backend()), ref = evaluate(g, outs[1], f, cpu_backend());
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_GT(max_abs(ref[i]), 0.0) << "output " << i;
    EXPECT_EQ(fused[i].to_vector(), ref[i].to_vector()) << "output " << i;
  }
}

TEST(FusedCrossEntropy, LabelOutsideTheClassesIsAnErrorOnTheCpu) {
  Graph g;
  Value x = ops::leaf(g, "x", {2, 3}, DType::f32), labels = ops::leaf(g, "labels", {2}, DType::i32);
  Value y = ops::cross_entropy(x, labels);
  EXPECT_THROW(evaluate(g, {y.id()}, {{"x", Tensor::zeros({2, 3}, DType::f32)},
                                      {"labels", Tensor::from_vector({2}, {0, 3}, DType::i32)}}, cpu_backend()),
               Error);
}

// quantize(x, x) for a vector x: one node in both slots gets both partials.
TEST(FusedQuantize, OneNodeInBothSlotsGetsBothPartials) {
  Graph g;
  Value x = ops::leaf(g, "x", {5}, DType::f64), probe = ops::leaf(g, "probe", {5}, DType::f64);
  Value gf = grad(ops::sum(ops::quantize(x, x) * probe), {x})[0];
  Value gr = grad(ops::sum(ops::quantize_reference(x, x) * probe), {x})[0];
  Value v = ops::leaf(g, "v", {5}, DType::f64);
  Value hf = grad(ops::sum(gf * v), {x})[0];
  Value hr = grad(ops::sum(gr * v), {x})[0];
  Feeds f{{"x", random_tensor({5}, DType::f64, 7, 0.0, 3.0)}, {"probe", random_tensor({5}, DType::f64, 8)},
          {"v", random_tensor({5}, DType::f64, 9)}};
  const auto r = evaluate(g, {gf.id(), gr.id(), hf.id(), hr.id()}, f, cpu_backend());
  EXPECT_GT(max_abs(r[1]), 0.0);
  EXPECT_GT(max_abs(r[3]), 0.0);
  EXPECT_LE(scaled_error(r[0], r[1], 1e-12, 1e-14), 1.0);
  EXPECT_LE(scaled_error(r[2], r[3], 1e-12, 1e-14), 1.0);
}

// attribution_stats(x, x): one node in both slots gets both partials.
TEST(FusedAttributionStats, OneNodeInBothSlotsGetsBothPartials) {
  Graph g;
  const Shape s{2, 2, 3, 4};
  Value x = ops::leaf(g, "x", s, DType::f64);
  Value probe = ops::leaf(g, "probe", {2, 3}, DType::f64);
  Value gf = grad(ops::sum(ops::attribution_stats(x, x, 1) * probe), {x})[0];
  Value gr = grad(ops::sum(ops::attribution_stats_reference(x, x, 1) * probe), {x})[0];
  Value v = ops::leaf(g, "v", s, DType::f64);
  Value hf = grad(ops::sum(gf * v), {x})[0];
  Value hr = grad(ops::sum(gr * v), {x})[0];
  Feeds f{{"x", random_tensor(s, DType::f64, 4)}, {"probe", random_tensor({2, 3}, DType::f64, 5)},
          {"v", random_tensor(s, DType::f64, 6)}};
  const auto r = evaluate(g, {gf.id(), gr.id(), hf.id(), hr.id()}, f, cpu_backend());
  EXPECT_GT(max_abs(r[1]), 0.0);
  EXPECT_GT(max_abs(r[3]), 0.0);
  EXPECT_LE(scaled_error(r[0], r[1], 1e-12, 1e-14), 1.0);
  EXPECT_LE(scaled_error(r[2], r[3], 1e-12, 1e-14), 1.0);
}

// ---- the quantizer

TEST(Quantizer, ForwardIsTheNearestCentroidAndGradientsAreTheSoftPaths) {
  Graph g;
  Value x = ops::leaf(g, "x", {4, 5}, DType::f64);
  Value raw = ops::leaf(g, "raw", {8}, DType::f64);
  Value c = ops::sigmoid(raw) * 6.0;
  Value q = ops::quantize(x, c);
  Value soft = ops::quantize_soft(x, c);
  std::vector<Value> gq = grad(ops::sum(q * x), {x, raw});
  // d/dx of sum(q·x) = q + x·dq/dx with dq/dx from the soft path; compare with the same
  // expression written with stop_gradient on the hard value.
  Value ste = soft + ops::stop_gradient(q - soft);
  std::vector<Value> gs = grad(ops::sum(ste * x), {x, raw});
  Feeds f{{"x", random_tensor({4, 5}, DType::f64, 1, -0.5, 6.5)}, {"raw", random_tensor({8}, DType::f64, 2, -3, 3)}};
  const auto r = evaluate(g, {q.id(), c.id(), gq[0].id(), gq[1].id(), gs[0].id(), gs[1].id()}, f, cpu_backend());
  for (int64_t i = 0; i < 20; ++i) {
    int64_t best = 0;
    for (int64_t j = 1; j < 8; ++j)
      if (std::abs(f["x"].item(i) - r[1].item(j)) < std::abs(f["x"].item(i) - r[1].item(best))) best = j;
    EXPECT_EQ(r[0].item(i), r[1].item(best));
  }
  for (int64_t j = 0; j < 8; ++j) {
    EXPECT_GT(r[1].item(j), 0.0);
    EXPECT_LT(r[1].item(j), 6.0);
  }
  EXPECT_LE(scaled_error(r[2], r[4], 1e-12, 1e-14), 1.0);
  EXPECT_LE(scaled_error(r[3], r[5], 1e-12, 1e-14), 1.0);
  EXPECT_GT(max_abs(r[3]), 1e-6);  // centroids do receive gradients
}

// ---- the whole step

// The full step in float64 with the smooth (soft) quantizer, so every parameter's
// derivative is defined: the analytic gradient against central differences, along a
// random direction over all parameters and element-wise for feature-extractor weights
// (whose gradients pass through the IG gradients, i.e. second order).
TEST(AgileNNStep, ParameterGradientsMatchFiniteDifferences) {
  train::AgileNNStepOptions opt;
  opt.preset = models::preset("tiny");
  opt.classes = 3;
  opt.batch = 4;
  opt.dtype = DType::f64;
  opt.quantizer = models::QuantizerMode::soft;
  auto step = train::build_agilenn_step(opt);
  nn::TensorMap values = step->params.initialise(17, DType::f64);
  const Tensor table = train::compute_zero_point_table(models::preset("tiny"), opt.classes, values, DType::f64, cpu_backend());

  Feeds feeds;
  for (auto& [name, t] : values) feeds[name] = t;
  feeds[step->zero_point_table] = table;
  feeds["images"] = random_tensor(step->images.shape(), DType::f64, 5, -1.5, 1.5);
  feeds["labels"] = Tensor::from_vector({4}, {0, 2, 1, 2}, DType::i32);

  std::vector<NodeId> grad_ids;
  for (const Value& v : step->grads) grad_ids.push_back(v.id());
  Executor loss_ex(step->graph, compile(step->graph, {step->loss.id()}), cpu_backend());
  Executor grad_ex(step->graph, compile(step->graph, grad_ids), cpu_backend());
  const auto grads = grad_ex.run(feeds);
  auto loss_at = [&](const Feeds& f) { return loss_ex.run(f)[0].item(0); };

  // Directional derivative over every trainable parameter. The step is only piecewise
  // smooth (ReLU6, the hinges, max/min of the disorder loss): along a random direction
  // over all parameters a kink lies within ~1e-5, so the step is 1e-7, where round-off
  // (ε·|loss|/h ≈ 1e-9) is still far below the 1e-6 tolerance.
  const double h = 1e-7;
  Feeds plus = feeds, minus = feeds;
  double analytic = 0;
  for (size_t k = 0; k < step->trainable.size(); ++k) {
    const std::string& name = step->trainable[k];
    const Tensor v = random_tensor(values[name].shape(), DType::f64, 100 + k);
    Tensor p = values[name].clone(), m = values[name].clone();
    for (int64_t i = 0; i < v.numel(); ++i) {
      p.set_item(i, p.item(i) + h * v.item(i));
      m.set_item(i, m.item(i) - h * v.item(i));
      analytic += grads[k].item(i) * v.item(i);
    }
    plus[name] = p;
    minus[name] = m;
  }
  const double numeric = (loss_at(plus) - loss_at(minus)) / (2 * h);
  EXPECT_NEAR(analytic, numeric, 1e-6 * (1 + std::abs(numeric)));

  // Element-wise for the feature extractor's first and last kernels.
  for (const std::string name : {"fe.sep1.depthwise.weight", "fe.sep2.pointwise.weight", "quantizer.centroids"}) {
    size_t k = 0;
    while (step->trainable[k] != name) ++k;
    const Tensor& w = values[name];
    for (int64_t i = 0; i < std::min<int64_t>(w.numel(), 12); ++i) {
      Feeds fp = feeds, fm = feeds;
      Tensor p = w.clone(), m = w.clone();
      p.set_item(i, w.item(i) + h);
      m.set_item(i, w.item(i) - h);
      fp[name] = p;
      fm[name] = m;
      const double fd = (loss_at(fp) - loss_at(fm)) / (2 * h);
      EXPECT_NEAR(grads[k].item(i), fd, 1e-7 + 1e-5 * std::abs(fd)) << name << "[" << i << "]";
    }
  }
}

}  // namespace
}  // namespace agilenn

namespace agilenn {
namespace {

TEST(ChannelRemap, OrdersByImportanceAndPermutesTheFeatures) {
  xai::ChannelImportance imp(4, 1);
  // Channel 2 has the largest mean; channel 1 is most often the top one.
  imp.add(Tensor::from_vector({3, 4}, {0.1, 1.0, 5.0, 0.2, 0.1, 1.0, 0.5, 0.2, 0.1, 1.0, 0.5, 0.3}, DType::f64));
  EXPECT_EQ(imp.order(xai::RemapMethod::global_importance), (std::vector<int64_t>{2, 1, 3, 0}));
  EXPECT_EQ(imp.order(xai::RemapMethod::topk_appearance), (std::vector<int64_t>{1, 2, 0, 3}));

  // Permuting the last layer permutes the feature extractor's output, in eval mode.
  const models::AgileNNPreset& p = models::preset("tiny");
  const int64_t c = p.feature_channels;
  Graph g;
  nn::ParamSet params;
  nn::Scope root(g, params, false, DType::f64);
  Value images = ops::leaf(g, "images", {2, p.input_size, p.input_size, 3}, DType::f64);
  Value f = models::feature_extractor(root.child("fe"), images, p);
  nn::TensorMap values = params.initialise(9, DType::f64);
  values["fe.bn2.moving_mean"] = random_tensor({c}, DType::f64, 1, -0.2, 0.2);  // distinct per channel
  values["fe.bn2.gamma"] = random_tensor({c}, DType::f64, 2, 0.5, 1.5);
  Feeds feeds;
  for (auto& [name, t] : values) feeds[name] = t;
  feeds["images"] = random_tensor({2, p.input_size, p.input_size, 3}, DType::f64, 3);
  const Tensor before = evaluate(g, {f.id()}, feeds, cpu_backend())[0];
  std::vector<int64_t> order(static_cast<size_t>(c));
  for (int64_t i = 0; i < c; ++i) order[static_cast<size_t>(i)] = (7 * i + 3) % c;  // a permutation: 7 and c coprime
  ASSERT_EQ(std::set<int64_t>(order.begin(), order.end()).size(), order.size());
  xai::permute_feature_channels(values, order);
  for (auto& [name, t] : values) feeds[name] = t;
  const Tensor after = evaluate(g, {f.id()}, feeds, cpu_backend())[0];
  // Not bit for bit: OpenBLAS's AVX-512 GEMM kernels round a column by where it falls in
  // their blocks of columns, and the permutation moves columns. Each feature is a float64
  // sum of 32 products (the last pointwise layer) and the batch norm: a few ulps of 1e-16
  // apart, not 1e-12. A wrong permutation moves whole values (order 0.1 apart).
  for (int64_t i = 0; i < after.numel(); ++i) {
    const double expected = before.item(i - i % c + order[static_cast<size_t>(i % c)]);
    ASSERT_NEAR(after.item(i), expected, 1e-12 * (1 + std::abs(expected))) << i;
  }
  std::vector<int64_t> repeated = order;
  repeated[1] = repeated[0];
  EXPECT_THROW(xai::permute_feature_channels(values, repeated), Error);
}

}  // namespace
}  // namespace agilenn
