// Graph construction, shape-rule errors and the autodiff driver's contract.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/autodiff/derivatives.h"
#include "engine/autodiff/grad.h"
#include "engine/core/error.h"
#include "tests/test_util.h"
#include "engine/ir/registry.h"
#include "engine/runtime/executor.h"

namespace agilenn {
namespace {

using ::testing::HasSubstr;

using testing::error_of;

TEST(Graph, ShapeRuleErrorsNameTheOpAndShapes) {
  Graph g;
  Value a = ops::leaf(g, "a", {2, 3}, DType::f32);
  Value b = ops::leaf(g, "b", {4, 3}, DType::f32);
  const std::string msg = error_of([&] { ops::add(a, b); });
  EXPECT_THAT(msg, HasSubstr("op 'add'"));
  EXPECT_THAT(msg, HasSubstr("[2,3]"));
  EXPECT_THAT(msg, HasSubstr("[4,3]"));
}

TEST(Graph, DtypeMismatchIsRefused) {
  Graph g;
  Value a = ops::leaf(g, "a", {2}, DType::f32);
  Value b = ops::leaf(g, "b", {2}, DType::f64);
  EXPECT_THAT(error_of([&] { ops::mul(a, b); }), HasSubstr("dtype"));
}

TEST(Graph, ConvChannelMismatchIsRefused) {
  Graph g;
  Value x = ops::leaf(g, "x", {1, 5, 5, 3}, DType::f32);
  Value w = ops::leaf(g, "w", {3, 3, 4, 8}, DType::f32);
  EXPECT_THAT(error_of([&] { ops::conv2d(x, w); }), HasSubstr("op 'conv2d'"));
}

TEST(Graph, SymmetricPaddingPadsEachSideAlikeAndNeedsAnOddKernel) {
  Graph g;
  const Value x = ops::leaf(g, "x", {1, 8, 8, 2}, DType::f32);
  ops::Conv2dOptions o;
  o.stride = {2, 2};
  o.padding = ops::Padding::symmetric;
  const Value y = ops::conv2d(x, ops::leaf(g, "w", {3, 3, 2, 4}, DType::f32), o);
  EXPECT_EQ(y.node().attrs.ints("pads"), (std::vector<int64_t>{1, 1, 1, 1}));  // "same" would give {0, 1, 0, 1}
  EXPECT_EQ(y.shape(), (Shape{1, 4, 4, 4}));
  EXPECT_THAT(error_of([&] { ops::conv2d(x, ops::leaf(g, "w2", {2, 2, 2, 4}, DType::f32), o); }),
              HasSubstr("symmetric padding needs an odd kernel extent"));
}

TEST(Graph, LeafNamesAreUnique) {
  Graph g;
  ops::leaf(g, "x", {1}, DType::f32);
  EXPECT_THROW(ops::leaf(g, "x", {1}, DType::f32), Error);
  EXPECT_EQ(g.find_leaf("x"), 0);
  EXPECT_EQ(g.find_leaf("y"), kNoNode);
}

// grad appends nodes while vjp rules hold `const Node&` (VjpContext::node, Value::shape());
// node storage must not move. Under ASan a regression shows as heap-use-after-free here.
TEST(Graph, NodeReferencesSurviveAppends) {
  Graph g;
  Value x = ops::leaf(g, "x", {3, 5}, DType::f64);
  const Node& held = g.node(x.id());
  const Shape& held_shape = x.shape();
  Value y = x;
  for (int i = 0; i < 10000; ++i) y = ops::add(y, x);
  ASSERT_EQ(g.size(), 10001u);
  EXPECT_EQ(&held, &g.node(x.id()));
  EXPECT_EQ(held.id, x.id());
  EXPECT_EQ(held.shape, (Shape{3, 5}));
  EXPECT_EQ(held.dtype, DType::f64);
  EXPECT_EQ(held_shape, (Shape{3, 5}));
}

TEST(Graph, UnknownOpIsNamed) {
  Graph g;
  EXPECT_THAT(error_of([&] { g.add("no_such_op", {}); }), HasSubstr("unknown op 'no_such_op'"));
}

// The registry's ops minus those this file registers for its own tests.
std::vector<std::string> builtin_ops() {
  std::vector<std::string> out;
  for (const std::string& name : OpRegistry::instance().names())
    if (name.rfind("test_", 0) != 0) out.push_back(name);
  return out;
}

TEST(Registry, EveryOpHasAShapeRuleAndADeclaredDerivative) {
  register_derivatives();
  for (const std::string& name : builtin_ops()) {
    const OpDef& d = OpRegistry::instance().get(name);
    EXPECT_TRUE(static_cast<bool>(d.shape)) << name;
    if (d.derivative == Derivative::rule) {
      EXPECT_TRUE(static_cast<bool>(d.vjp)) << name;
    } else if (d.derivative == Derivative::undefined) {
      EXPECT_FALSE(d.no_vjp_reason.empty()) << name << " lacks a vjp";
    }
  }
}

TEST(Registry, EveryOpHasACpuKernel) {
  for (const std::string& name : builtin_ops()) {
    if (name == "leaf") continue;
    EXPECT_TRUE(cpu_backend().supports(name)) << name;
  }
}

TEST(Grad, ThroughAnOpWithoutVjpFailsNamingIt) {
  Graph g;
  Value x = ops::leaf(g, "x", {1, 4, 4, 2}, DType::f64);
  Value y = ops::sum(ops::resize_bilinear(x * 2.0, 8, 8));
  const std::string msg = error_of([&] { grad(y, {x}); });
  EXPECT_THAT(msg, HasSubstr("op 'resize_bilinear' has no vjp"));
}

TEST(Grad, AnOpRegisteredWithoutRuleIsNamedNotZeroed) {
  static const bool registered = [] {
    OpDef d;
    d.name = "test_op_without_vjp";
    d.shape = [](const Graph& g, const std::vector<NodeId>& in, const Attrs&) {
      return TypeInfo{g.node(in[0]).shape, g.node(in[0]).dtype};
    };
    OpRegistry::instance().add(std::move(d));
    return true;
  }();
  ASSERT_TRUE(registered);
  Graph g;
  Value x = ops::leaf(g, "x", {3}, DType::f64);
  Value y = ops::sum(Value(&g, g.add("test_op_without_vjp", {x.id()})));
  EXPECT_THAT(error_of([&] { grad(y, {x}); }), HasSubstr("op 'test_op_without_vjp' has no vjp"));
}

TEST(Grad, OpsWithoutVjpOffThePathAreFine) {
  Graph g;
  Value x = ops::leaf(g, "x", {1, 2, 2, 1}, DType::f64);
  Value data = ops::leaf(g, "data", {1, 2, 2, 1}, DType::f64);
  Value y = ops::sum(ops::resize_bilinear(data, 3, 3)) * ops::sum(x);
  Value gx = grad(y, {x})[0];
  Feeds f{{"x", Tensor::zeros({1, 2, 2, 1}, DType::f64)},
          {"data", Tensor::from_vector({1, 2, 2, 1}, {1, 1, 1, 1}, DType::f64)}};
  const Tensor r = evaluate(g, {gx.id()}, f, cpu_backend())[0];
  for (double v : r.to_vector()) EXPECT_DOUBLE_EQ(v, 9.0);
}

TEST(Grad, DisconnectedInputGetsZeros) {
  Graph g;
  Value x = ops::leaf(g, "x", {2}, DType::f64);
  Value z = ops::leaf(g, "z", {3}, DType::f64);
  Value y = ops::sum(x * x);
  auto gs = grad(y, {x, z});
  const auto r = evaluate(g, {gs[0].id(), gs[1].id()},
                          {{"x", Tensor::from_vector({2}, {1.5, -2}, DType::f64)}, {"z", Tensor::zeros({3}, DType::f64)}}, cpu_backend());
  EXPECT_EQ(r[0].to_vector(), (std::vector<double>{3.0, -4.0}));
  EXPECT_EQ(r[1].to_vector(), (std::vector<double>{0, 0, 0}));
}

TEST(Grad, NonScalarNeedsSeed) {
  Graph g;
  Value x = ops::leaf(g, "x", {2}, DType::f64);
  EXPECT_THAT(error_of([&] { grad(x * x, {x}); }), HasSubstr("give a seed"));
  Value seed = ops::leaf(g, "seed", {2}, DType::f64);
  Value gx = grad(x * x, {x}, seed)[0];
  const auto r = evaluate(g, {gx.id()}, {{"x", Tensor::from_vector({2}, {1, 2}, DType::f64)},
                                         {"seed", Tensor::from_vector({2}, {10, 100}, DType::f64)}}, cpu_backend());
  EXPECT_EQ(r[0].to_vector(), (std::vector<double>{20, 400}));
}

TEST(Grad, BroadcastGradientsAreReducedOnceAndAccumulated) {
  Graph g;
  Value x = ops::leaf(g, "x", {3, 4}, DType::f64);
  Value b = ops::leaf(g, "b", {4}, DType::f64);
  // b is used twice and broadcast each time: d/db = 3 rows * (1 + 2).
  Value y = ops::sum(x + b) + ops::sum((x * 0.0 + b) * 2.0);
  Value gb = grad(y, {b})[0];
  EXPECT_EQ(gb.shape(), (Shape{4}));
  const auto r = evaluate(g, {gb.id()}, {{"x", Tensor::zeros({3, 4}, DType::f64)}, {"b", Tensor::zeros({4}, DType::f64)}}, cpu_backend());
  for (double v : r[0].to_vector()) EXPECT_DOUBLE_EQ(v, 9.0);
}

// m's gradient is minus the column sum of (x - m)'s, here w · k: by linearity, k times the
// sum of w, which the graph already has, so it adds no pass over a full-size value. Without
// that sum in the graph it takes the pass, with the same numbers.
TEST(Grad, ABroadcastOperandsGradientIsTakenFromSumsTheGraphHasByLinearity) {
  const Shape shape{6, 5, 7};
  const Feeds feeds{{"x", testing::random_tensor(shape, DType::f64, 1)},
                    {"w", testing::random_tensor(shape, DType::f64, 2)},
                    {"m", testing::random_tensor({7}, DType::f64, 3)},
                    {"k", testing::random_tensor({7}, DType::f64, 4)}};
  std::vector<std::vector<double>> dms;
  for (bool summed : {true, false}) {
    Graph g;
    const Value x = ops::leaf(g, "x", shape, DType::f64), w = ops::leaf(g, "w", shape, DType::f64);
    const Value m = ops::leaf(g, "m", {7}, DType::f64), k = ops::leaf(g, "k", {7}, DType::f64);
    const Value sum_w = ops::sum(w, {0, 1});
    const Value dm = grad(ops::sum((x - m) * k * w), {m})[0];
    const Plan plan = compile(g, summed ? std::vector<NodeId>{sum_w.id(), dm.id()} : std::vector<NodeId>{dm.id()});
    size_t column_sums = 0;
    for (NodeId id : plan.order) {
      const Node& n = g.node(id);
      column_sums += n.op_name() == "sum" && g.node(n.inputs[0]).shape == shape && n.shape != Shape{} ? 1 : 0;
    }
    EXPECT_EQ(column_sums, 1u) << (summed ? "sum(w) alone" : "the pass over w · k");
    dms.push_back(evaluate(g, {dm.id()}, feeds, cpu_backend())[0].to_vector());
  }
  const std::vector<double> w = feeds.at("w").to_vector(), k = feeds.at("k").to_vector();
  for (size_t c = 0; c < 7; ++c) {
    double sum_w = 0;
    for (size_t i = c; i < w.size(); i += 7) sum_w += w[i];
    for (const auto& dm : dms) EXPECT_NEAR(dm[c], -k[c] * sum_w, 1e-12 * (1 + std::abs(k[c] * sum_w)));
  }
}

TEST(Grad, IntegerInputsGetNoGradient) {
  Graph g;
  Value logits = ops::leaf(g, "logits", {2, 3}, DType::f64);
  Value labels = ops::leaf(g, "labels", {2}, DType::i32);
  Value loss = ops::mean(ops::cross_entropy(logits, labels));
  auto gs = grad(loss, {logits, labels});
  EXPECT_EQ(gs[1].dtype(), DType::i32);
  EXPECT_EQ(gs[1].node().op_name(), "fill");
}

TEST(Grad, StopGradientBlocks) {
  Graph g;
  Value x = ops::leaf(g, "x", {}, DType::f64);
  Value y = ops::stop_gradient(x * x) * x;  // d/dx = x², not 3x²
  Value gx = grad(y, {x})[0];
  EXPECT_DOUBLE_EQ(evaluate(g, {gx.id()}, {{"x", Tensor::scalar(3.0, DType::f64)}}, cpu_backend())[0].item(0), 9.0);
}

TEST(Grad, ZeroDerivativeOpAmongTheInputsGetsItsOwnGradient) {
  Graph g;
  Value x = ops::leaf(g, "x", {2}, DType::f64);
  Value s = ops::stop_gradient(x);
  auto gs = grad(ops::sum(s * x), {x, s});
  const auto r = evaluate(g, {gs[0].id(), gs[1].id()}, {{"x", Tensor::from_vector({2}, {2, -3}, DType::f64)}}, cpu_backend());
  EXPECT_EQ(r[0].to_vector(), (std::vector<double>{2, -3}));  // d/dx with s held: s
  EXPECT_EQ(r[1].to_vector(), (std::vector<double>{2, -3}));  // d/ds: x
}

TEST(Grad, MaxSharesTheGradientAmongTies) {
  Graph g;
  Value x = ops::leaf(g, "x", {4}, DType::f64);
  Value gx = grad(ops::max(x), {x})[0];
  const auto r = evaluate(g, {gx.id()}, {{"x", Tensor::from_vector({4}, {1, 3, 3, -1}, DType::f64)}}, cpu_backend());
  EXPECT_EQ(r[0].to_vector(), (std::vector<double>{0, 0.5, 0.5, 0}));
}

TEST(Grad, FusedOpWithOneNodeInBothSlotsMatchesItsDecomposition) {
  Graph g;
  Value x = ops::leaf(g, "x", {1, 2, 2, 3}, DType::f64);
  Value fused = grad(ops::sum(ops::attribution_stats(x, x, 1)), {x})[0];
  Value reference = grad(ops::sum(ops::attribution_stats_reference(x, x, 1)), {x})[0];
  Tensor xv = Tensor::from_vector({1, 2, 2, 3}, {0.3, -0.7, 1.1, 0.2, 0.5, -0.4, 0.9, -1.3, 0.6, 0.1, -0.8, 1.4}, DType::f64);
  const auto r = evaluate(g, {fused.id(), reference.id()}, {{"x", xv}}, cpu_backend());
  for (int64_t i = 0; i < 12; ++i) EXPECT_NEAR(r[0].item(i), r[1].item(i), 1e-12);
}

TEST(Graph, InvalidAttributesAreRefusedAtBuildTime) {
  Graph g;
  Value img = ops::leaf(g, "img", {1, 0, 2, 1}, DType::f32);
  EXPECT_THAT(error_of([&] { ops::resize_bilinear(img, 2, 2); }), HasSubstr("op 'resize_bilinear'"));
  Value gr = ops::leaf(g, "g", {3}, DType::f32);
  Value idx = ops::leaf(g, "i", {3}, DType::i32);
  EXPECT_THAT(error_of([&] { ops::gather_backward(gr, idx, 0, -1); }), HasSubstr("op 'gather_backward'"));
  Value empty = ops::leaf(g, "e", {4, 0}, DType::f32);
  EXPECT_THAT(error_of([&] { ops::batch_norm_train(empty, empty, empty, empty, empty, 0.9, 1e-3); }),
              HasSubstr("batch_norm_train"));
  Value v = ops::leaf(g, "v", {3}, DType::f32);
  EXPECT_THAT(error_of([&] { ops::mean(v, {4}); }), HasSubstr("mean over [4]"));
}

TEST(Grad, CastBetweenFloatsPassesTheGradientInTheInputDtype) {
  Graph g;
  Value x = ops::leaf(g, "x", {2}, DType::f64);
  Value y = ops::sum(ops::cast(x, DType::f32) * 3.0);
  Value gx = grad(y, {x})[0];
  EXPECT_EQ(gx.dtype(), DType::f64);
  const auto r = evaluate(g, {gx.id()}, {{"x", Tensor::from_vector({2}, {1, 2}, DType::f64)}}, cpu_backend());
  EXPECT_EQ(r[0].to_vector(), (std::vector<double>{3, 3}));
}

}  // namespace
}  // namespace agilenn
