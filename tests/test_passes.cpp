// CSE, DCE, the memory plan and its verifier, and the executor's feed checks.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstring>
#include <set>

#include "engine/autodiff/grad.h"
#include "engine/core/error.h"
#include "engine/data/synthetic.h"
#include "engine/ir/registry.h"
#include "engine/runtime/executor.h"
#include "tests/agilenn_trainers.h"
#include "tests/test_util.h"

namespace agilenn {
namespace {

using ::testing::HasSubstr;

TEST(Cse, MergesIdenticalNodesButNotNamedLeaves) {
  Graph g;
  Value x = ops::leaf(g, "x", {4}, DType::f32);
  Value y = ops::leaf(g, "y", {4}, DType::f32);
  Value a = ops::exp(x) + 1.0;
  Value b = ops::exp(x) + 1.0;  // same computation, separate nodes
  Value c = ops::exp(y) + 1.0;
  const auto canon = common_subexpressions(g);
  EXPECT_EQ(canon[static_cast<size_t>(a.id())], canon[static_cast<size_t>(b.id())]);
  EXPECT_NE(canon[static_cast<size_t>(a.id())], canon[static_cast<size_t>(c.id())]);
  EXPECT_NE(canon[static_cast<size_t>(x.id())], canon[static_cast<size_t>(y.id())]);
}

TEST(Cse, DistinguishesAttributes) {
  Graph g;
  Value x = ops::leaf(g, "x", {4, 3}, DType::f32);
  Value s0 = ops::sum(x, {0});
  Value s1 = ops::sum(x, {1});
  Value c1 = ops::clamp(x, 0.0, 1.0), c2 = ops::clamp(x, 0.0, 2.0);
  const auto canon = common_subexpressions(g);
  EXPECT_NE(canon[static_cast<size_t>(s0.id())], canon[static_cast<size_t>(s1.id())]);
  EXPECT_NE(canon[static_cast<size_t>(c1.id())], canon[static_cast<size_t>(c2.id())]);
}

TEST(Dce, KeepsOnlyWhatOutputsNeed) {
  Graph g;
  Value x = ops::leaf(g, "x", {4}, DType::f32);
  Value unused_leaf = ops::leaf(g, "unused", {4}, DType::f32);
  Value used = ops::tanh(x);
  Value dead = ops::exp(x) * unused_leaf;
  const Plan p = compile(g, {used.id()});
  EXPECT_EQ(p.order, (std::vector<NodeId>{x.id(), used.id()}));
  (void)dead;
  // The unused leaf needs no feed.
  const auto r = evaluate(g, {used.id()}, {{"x", Tensor::zeros({4}, DType::f32)}}, cpu_backend());
  EXPECT_EQ(r[0].item(0), 0.0);
}

TEST(MemoryPlan, ChainReusesBuffers) {
  Graph g;
  Value h = ops::leaf(g, "x", {64, 256}, DType::f32);
  for (int i = 0; i < 20; ++i) h = ops::tanh(h * 1.01);
  const Plan p = compile(g, {h.id()});
  verify_memory_plan(p.memory);
  // 39 intermediates (a scalar and a product per layer, bar the output) of up to 64 KiB;
  // a chain only ever needs its producer and its consumer live at once.
  EXPECT_GT(p.memory.total_bytes, 30u * 65536u);
  EXPECT_LE(p.memory.arena_bytes, 2u * 65536u + 4096u);
  EXPECT_LT(static_cast<double>(p.memory.arena_bytes) / static_cast<double>(p.memory.total_bytes), 0.1);
}

// Without in-place reuse: the same order, each intermediate in memory of its own.
Plan without_in_place(const Graph& g, const Plan& p) {
  Plan q = p;
  q.memory = plan_memory(g, p.order, p.reads, p.outputs, false);
  return q;
}

TEST(MemoryPlan, AnElementwiseChainRunsInPlaceInOneBuffer) {
  Graph g;
  Value h = ops::leaf(g, "x", {64, 256}, DType::f32);
  for (int i = 0; i < 20; ++i) h = ops::tanh(h * 1.01);
  const Value out = ops::sum(h);
  const Plan p = compile(g, {out.id()});
  verify_memory_plan(p.memory);
  const Plan q = without_in_place(g, p);
  verify_memory_plan(q.memory);
  // Every product and tanh but the first product (whose input is the fed leaf) writes over
  // its input: 39 of 40, one 64 KiB buffer (and the scalar 1.01) instead of two.
  EXPECT_EQ(p.memory.in_place, 39u);
  EXPECT_EQ(q.memory.in_place, 0u);
  EXPECT_LE(p.memory.arena_bytes, 65536u + 64u);
  EXPECT_GE(q.memory.arena_bytes, 2u * 65536u);
  const Feeds feeds{{"x", testing::random_tensor({64, 256}, DType::f32, 5)}};
  Executor with(g, p, cpu_backend()), plain(g, q, cpu_backend());
  EXPECT_EQ(with.run(feeds)[0].item(0), plain.run(feeds)[0].item(0));
}

TEST(MemoryPlan, BackwardGraphPlansWithoutOverlap) {
  Graph g;
  Value x = ops::leaf(g, "x", {8, 32}, DType::f64);
  Value w = ops::leaf(g, "w", {32, 32}, DType::f64);
  Value h = x;
  for (int i = 0; i < 6; ++i) h = ops::tanh(ops::matmul(h, w));
  Value loss = ops::sum(h * h);
  Value gw = grad(loss, {w})[0];
  Value hv = grad(ops::sum(gw * gw), {w})[0];
  const Plan p = compile(g, {loss.id(), gw.id(), hv.id()});
  verify_memory_plan(p.memory);
  EXPECT_LT(p.memory.arena_bytes, p.memory.total_bytes);
  // In place or not, the same numbers, bit for bit.
  const Plan q = without_in_place(g, p);
  EXPECT_GT(p.memory.in_place, 0u);
  EXPECT_LE(p.memory.arena_bytes, q.memory.arena_bytes);
  const Feeds feeds{{"x", testing::random_tensor({8, 32}, DType::f64, 1)},
                    {"w", testing::random_tensor({32, 32}, DType::f64, 2, -0.3, 0.3)}};
  Executor with(g, p, cpu_backend()), plain(g, q, cpu_backend());
  const std::vector<Tensor> a = with.run(feeds), b = plain.run(feeds);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].to_vector(), b[i].to_vector()) << i;
}

TEST(MemoryPlan, VerifierCatchesOverlappingLiveBuffers) {
  MemoryPlan bad;
  bad.buffers = {{0, 128, 0, 0, 3}, {1, 128, 64, 2, 4}};
  bad.arena_bytes = 192;
  EXPECT_THROW(verify_memory_plan(bad), Error);
  MemoryPlan ok = bad;
  ok.buffers[1].first = 4;  // lifetimes no longer overlap
  ok.buffers[0].last = 3;
  EXPECT_NO_THROW(verify_memory_plan(ok));
  // In place: node 1 takes node 0's bytes at the step that reads node 0 last.
  MemoryPlan in_place;
  in_place.buffers = {{0, 128, 0, 0, 3}, {1, 128, 0, 3, 5, 0}};
  in_place.arena_bytes = 128;
  EXPECT_NO_THROW(verify_memory_plan(in_place));
  in_place.buffers[1].offset = 64;  // not at its input's bytes
  in_place.arena_bytes = 192;
  EXPECT_THROW(verify_memory_plan(in_place), Error);
}

// Layers shaped like a convolution's batch norm and activation: a product (the "conv"),
// then elementwise work whose values the backward reads (a centred value, its scaling, a
// hard swish or a swish), so the forward keeps several full-size values per layer for the
// backward.
struct ElementwiseLayers {
  Graph g;
  std::vector<NodeId> outputs;
  Feeds feeds;

  ElementwiseLayers(int layers, bool swish) {
    constexpr int64_t kRows = 64, kWidth = 128;
    Value h = ops::leaf(g, "x", {kRows, kWidth}, DType::f64);
    feeds["x"] = testing::random_tensor({kRows, kWidth}, DType::f64, 1);
    std::vector<Value> params;
    for (int i = 0; i < layers; ++i) {
      const std::string k = std::to_string(i);
      const Value w = ops::leaf(g, "w" + k, {kWidth, kWidth}, DType::f64, LeafKind::parameter);
      const Value centre = ops::leaf(g, "c" + k, {1, kWidth}, DType::f64, LeafKind::parameter);
      const Value scale = ops::leaf(g, "s" + k, {1, kWidth}, DType::f64, LeafKind::parameter);
      feeds["w" + k] = testing::random_tensor({kWidth, kWidth}, DType::f64, 10 + i, -0.15, 0.15);
      feeds["c" + k] = testing::random_tensor({1, kWidth}, DType::f64, 30 + i, -0.1, 0.1);
      feeds["s" + k] = testing::random_tensor({1, kWidth}, DType::f64, 50 + i, 0.5, 1.5);
      const Value y = (ops::matmul(h, w) - centre) * scale;
      h = swish ? y * ops::sigmoid(y) : y * ops::clamp(y + 3.0, 0.0, 6.0) * (1.0 / 6.0);
      params.insert(params.end(), {w, centre, scale});
    }
    const Value loss = ops::sum(h * h);
    outputs.push_back(loss.id());
    for (const Value& d : grad(loss, params)) outputs.push_back(d.id());
  }
};

size_t count_op(const Graph& g, const Plan& plan, const std::string& op) {
  return static_cast<size_t>(
      std::count_if(plan.order.begin(), plan.order.end(), [&](NodeId id) { return g.node(id).op_name() == op; }));
}

std::vector<std::vector<double>> run_plan(const Graph& g, Plan plan, const Feeds& feeds) {
  Executor ex(g, std::move(plan), cpu_backend());
  std::vector<std::vector<double>> out;
  for (const Tensor& t : ex.run(feeds)) out.push_back(t.to_vector());
  return out;
}

TEST(Rematerialise, ForwardValuesWaitingForTheBackwardAreRecomputedThere) {
  ElementwiseLayers net(6, false);
  const Plan keep = compile(net.g, net.outputs);
  const Plan remat = compile(net.g, net.outputs, CompileOptions{0});
  verify_memory_plan(remat.memory);
  EXPECT_GT(remat.recomputed, 0u);
  EXPECT_EQ(remat.live_peak_without_remat, keep.memory.live_peak_bytes);
  // Keeping everything holds several 64 KiB values per layer for the backward (the centred
  // and scaled values, the hard swish's pieces); recomputing keeps about one. Measured: a
  // live peak of 1.94 MiB against 0.56 MiB, 38 nodes added to 141 (the pass is integer
  // work on the graph, the same on any machine).
  EXPECT_LT(static_cast<double>(remat.memory.live_peak_bytes),
            0.5 * static_cast<double>(keep.memory.live_peak_bytes));
  // The copies compute what the originals did, from the same values: bit-equal results.
  EXPECT_EQ(run_plan(net.g, remat, net.feeds), run_plan(net.g, keep, net.feeds));
  // The graph gained the copies; compiled again without the option, CSE folds them away.
  EXPECT_EQ(compile(net.g, net.outputs).order, keep.order);
}

TEST(Rematerialise, TranscendentalValuesAreKeptNotRecomputed) {
  ElementwiseLayers net(6, true);
  const Plan keep = compile(net.g, net.outputs);
  const Plan remat = compile(net.g, net.outputs, CompileOptions{0});
  EXPECT_GT(remat.recomputed, 0u);
  EXPECT_LT(remat.memory.live_peak_bytes, keep.memory.live_peak_bytes);
  const std::set<NodeId> original(keep.order.begin(), keep.order.end());
  for (NodeId id : remat.order) {
    if (original.count(id)) continue;
    EXPECT_FALSE(net.g.node(id).op->transcendental) << net.g.describe(id);
  }
  EXPECT_EQ(run_plan(net.g, remat, net.feeds), run_plan(net.g, keep, net.feeds));
}

TEST(Rematerialise, StopsOnceThePeakIsWithinTheBudget) {
  ElementwiseLayers net(6, false);
  const Plan keep = compile(net.g, net.outputs);
  const Plan lowest = compile(net.g, net.outputs, CompileOptions{0});
  const size_t budget = (keep.memory.live_peak_bytes + lowest.memory.live_peak_bytes) / 2;
  const Plan within = compile(net.g, net.outputs, CompileOptions{budget});
  verify_memory_plan(within.memory);
  EXPECT_LE(within.memory.live_peak_bytes, budget);
  EXPECT_GT(within.memory.live_peak_bytes, lowest.memory.live_peak_bytes);
  EXPECT_LT(within.recomputed, lowest.recomputed);
  // A budget the plan already meets changes nothing.
  const Plan roomy = compile(net.g, net.outputs, CompileOptions{keep.memory.live_peak_bytes});
  EXPECT_EQ(roomy.recomputed, 0u);
  EXPECT_EQ(roomy.order, keep.order);
}

// The tiny second-order AgileNN step (batch 16) from one state, twice: as planned, and
// compiled with `options`.
struct TinySteps {
  std::unique_ptr<train::Trainer> planned, compiled;
  int64_t side = 0;

  explicit TinySteps(const CompileOptions& options) {
    train::AgileNNStepOptions opt;
    opt.classes = 10;
    opt.batch = 16;
    side = opt.preset.input_size;
    const testing::AgileNNTrainers trainers(opt, 5);
    planned = trainers.make(cpu_backend(), 100);
    compiled = trainers.make(cpu_backend(), 100, false, options);
    verify_memory_plan(compiled->plan().memory);
  }

  // Two steps of each on one batch: the same losses, parameters and state, bit for bit.
  void expect_same_training() {
    const data::Batch b = data::SyntheticDataset(10, side, side, 3, 32, 9).batch(0, 16);
    for (int s = 0; s < 2; ++s)
      EXPECT_EQ(planned->step(b.images, b.labels).loss, compiled->step(b.images, b.labels).loss);
    for (const auto& [name, v] : planned->values())
      EXPECT_EQ(v.to_vector(), compiled->values().at(name).to_vector()) << name;
  }
};

TEST(Rematerialise, TheSecondOrderAgileNNStepTrainsBitForBitInLessThanHalfTheMemory) {
  TinySteps steps(CompileOptions{0});
  // Measured at batch 16: a live peak of 15.7 MiB keeping every value and 5.9 MiB with
  // recomputation, 163 nodes added to 1,618 (integer work on the graph, the same on any
  // machine).
  EXPECT_LT(static_cast<double>(steps.compiled->plan().memory.live_peak_bytes),
            0.5 * static_cast<double>(steps.planned->plan().memory.live_peak_bytes));
  steps.expect_same_training();
}

TEST(Fusion, ChainsBecomeOneNodeWithBitEqualResults) {
  ElementwiseLayers net(4, false);
  const Plan plain = compile(net.g, net.outputs);
  CompileOptions options;
  options.fuse = true;
  const Plan fused = compile(net.g, net.outputs, options);
  verify_memory_plan(fused.memory);
  EXPECT_GT(fused.fused, 0u);
  EXPECT_LT(fused.order.size(), plain.order.size());
  EXPECT_LT(fused.memory.total_bytes, plain.memory.total_bytes);
  // A fused node reads its inputs where its result is made; that must never raise the peak.
  EXPECT_LE(fused.memory.live_peak_bytes, plain.memory.live_peak_bytes);
  EXPECT_EQ(run_plan(net.g, fused, net.feeds), run_plan(net.g, plain, net.feeds));
}

// A batch norm's statistics and its backward's column sums read chains of elementwise
// ops: each such sum becomes one fused_sum node, which equals the chain and sum bit for bit.
// The batch norm's input is a leaf, then a value in the arena (exp(leaf), stored: its
// readers do not recompute exp), which x's gradient keeps alive past the small steps that
// finish the mean's gradient.
class FusionOfABatchNorm : public ::testing::TestWithParam<bool> {};

TEST_P(FusionOfABatchNorm, ColumnSumsTakeInTheChainsTheyReadBitForBit) {
  Graph g;
  const Shape shape{6, 5, 7};
  const Value x_leaf = ops::leaf(g, "x", shape, DType::f64);
  const Value x = GetParam() ? ops::exp(x_leaf) : x_leaf;
  const Value gamma = ops::leaf(g, "gamma", {7}, DType::f64, LeafKind::parameter);
  const Value beta = ops::leaf(g, "beta", {7}, DType::f64, LeafKind::parameter);
  const Value mean = ops::leaf(g, "mean", {7}, DType::f64, LeafKind::state);
  const Value var = ops::leaf(g, "var", {7}, DType::f64, LeafKind::state);
  const ops::BatchNormResult bn = ops::batch_norm_train(x, gamma, beta, mean, var, 0.9, 1e-5, 1);
  const Value loss = ops::sum(ops::clamp(bn.y, 0.0, 6.0) * x);
  std::vector<NodeId> outputs{loss.id()};
  for (const Value& d : grad(loss, {x, gamma, beta})) outputs.push_back(d.id());
  const Feeds feeds{{"x", testing::random_tensor(shape, DType::f64, 1, -1.0, 3.0)},
                    {"gamma", testing::random_tensor({7}, DType::f64, 2, 0.5, 1.5)},
                    {"beta", testing::random_tensor({7}, DType::f64, 3, 0.0, 2.0)},
                    {"mean", testing::random_tensor({7}, DType::f64, 4)},
                    {"var", testing::random_tensor({7}, DType::f64, 5, 0.5, 1.0)}};
  const Plan plain = compile(g, outputs);
  CompileOptions options;
  options.fuse = true;
  const Plan fused = compile(g, outputs, options);
  verify_memory_plan(fused.memory);
  EXPECT_GE(count_op(g, fused, "fused_sum"), 2u);  // the variance and the scale's gradient
  EXPECT_LT(count_op(g, fused, "sum"), count_op(g, plain, "sum"));
  const auto full_size = [&](const Plan& plan, const std::string& op) {
    return std::count_if(plan.order.begin(), plan.order.end(),
                         [&](NodeId id) { return g.node(id).op_name() == op && g.node(id).shape == shape; });
  };
  // The centred input x - mean, read by the variance, the normalisation and the backward,
  // is recomputed by each of them from x: it is never stored.
  EXPECT_GE(full_size(plain, "sub"), 1);
  EXPECT_EQ(full_size(fused, "sub"), 0);
  // x's gradient times the per-channel scale joins the fused node that reads it, though
  // that node then reads the scale later than the product would have.
  EXPECT_GE(full_size(plain, "mul"), 1);
  EXPECT_EQ(full_size(fused, "mul"), 0);
  // The mean's gradient comes from the sums of the clamp's gradient and of x (autodiff
  // takes it by linearity). Three passes sum columns: x's for the mean, the variance, and
  // one for both beta's and the scale's gradients (the clamp's gradient, and it times
  // x - mean); x's gradient is one pass over x and the clamp's gradient.
  const auto column_sums = std::count_if(fused.order.begin(), fused.order.end(), [&](NodeId id) {
    const Node& n = g.node(id);
    return (n.op_name() == "sum" || n.op_name() == "fused_sum") && n.shape != Shape{} &&
           std::any_of(n.inputs.begin(), n.inputs.end(), [&](NodeId in) { return g.node(in).shape == shape; });
  });
  EXPECT_EQ(column_sums, 3);
  const auto two_sums = std::count_if(fused.order.begin(), fused.order.end(), [&](NodeId id) {
    return g.node(id).op_name() == "fused_sum" && g.node(id).shape == Shape{2, 1, 1, 7};  // two sums, kept dims
  });
  EXPECT_EQ(two_sums, 1);
  const Node& dx = g.node(fused.outputs[1]);
  EXPECT_EQ(dx.op_name(), "fused_elementwise");
  EXPECT_EQ(std::count_if(dx.inputs.begin(), dx.inputs.end(), [&](NodeId in) { return g.node(in).shape == shape; }),
            2);
  EXPECT_LT(fused.memory.total_bytes, plain.memory.total_bytes);
  EXPECT_LT(fused.memory.live_peak_bytes, plain.memory.live_peak_bytes);
  EXPECT_EQ(run_plan(g, fused, feeds), run_plan(g, plain, feeds));
}
INSTANTIATE_TEST_SUITE_P(Fusion, FusionOfABatchNorm, ::testing::Values(false, true),
                         [](const auto& p) { return p.param ? "StoredInput" : "LeafInput"; });

// A value read by several fused readers is copied into each when it reads one value of its
// size (x - m, m per column); one that reads two (x · y) is stored and read.
TEST(Fusion, ACheapValueWithSeveralReadersIsRecomputedByEachUnlessItReadsTwoFullValues) {
  Graph g;
  const Value x = ops::leaf(g, "x", {64, 8}, DType::f64);
  const Value y = ops::leaf(g, "y", {64, 8}, DType::f64);
  const Value m = ops::leaf(g, "m", {8}, DType::f64);
  const Value centred = ops::exp(x) - m;  // exp: not a leaf, so it takes arena memory
  const Value product = ops::exp(x) * y;
  const std::vector<NodeId> outputs{ops::sum(centred * centred, {0}).id(), (centred * 2.0).id(),
                                    ops::sum(product + 1.0, {0}).id(), (product * 3.0).id()};
  const Feeds feeds{{"x", testing::random_tensor({64, 8}, DType::f64, 1)},
                    {"y", testing::random_tensor({64, 8}, DType::f64, 2)},
                    {"m", testing::random_tensor({8}, DType::f64, 3)}};
  const Plan plain = compile(g, outputs);
  CompileOptions options;
  options.fuse = true;
  const Plan fused = compile(g, outputs, options);
  verify_memory_plan(fused.memory);
  const auto stored = [&](const Value& v) {
    return std::find(fused.order.begin(), fused.order.end(), v.id()) != fused.order.end();
  };
  EXPECT_FALSE(stored(centred));
  EXPECT_TRUE(stored(product));
  EXPECT_EQ(count_op(g, fused, "fused_sum"), 2u);
  EXPECT_EQ(run_plan(g, fused, feeds), run_plan(g, plain, feeds));
}

// A sum that is a plan output fuses too: the plan's outputs and its CSE map, through which
// gradient buckets find their gradients, name the fused node.
TEST(Fusion, AnOutputSumFusesUnderItsOwnName) {
  Graph g;
  const Value x = ops::leaf(g, "x", {16, 4}, DType::f64);
  const Value sum = ops::sum(ops::exp(x) * x, {0});
  const Feeds feeds{{"x", testing::random_tensor({16, 4}, DType::f64, 1)}};
  const Plan plain = compile(g, {sum.id()});
  CompileOptions options;
  options.fuse = true;
  const Plan fused = compile(g, {sum.id()}, options);
  ASSERT_EQ(fused.outputs.size(), 1u);
  EXPECT_EQ(g.node(fused.outputs[0]).op_name(), "fused_sum");
  EXPECT_EQ(fused.canonical[static_cast<size_t>(sum.id())], fused.outputs[0]);
  EXPECT_EQ(run_plan(g, fused, feeds), run_plan(g, plain, feeds));
}

TEST(Fusion, TheSecondOrderAgileNNStepTrainsBitForBitFusedAndRecomputed) {
  CompileOptions options{0};
  options.fuse = true;
  TinySteps steps(options);
  EXPECT_GT(steps.compiled->plan().fused, 0u);
  EXPECT_GT(count_op(steps.compiled->graph().graph, steps.compiled->plan(), "fused_sum"), 0u);
  // Fusion keeps what recomputation saved (5.9 of 15.7 MiB, as without fusion).
  EXPECT_LT(static_cast<double>(steps.compiled->plan().memory.live_peak_bytes),
            0.5 * static_cast<double>(steps.planned->plan().memory.live_peak_bytes));
  steps.expect_same_training();
}

TEST(Executor, MissingAndMistypedFeedsAreNamed) {
  Graph g;
  Value x = ops::leaf(g, "images", {2, 3}, DType::f32);
  Value y = ops::exp(x);
  Executor ex(g, compile(g, {y.id()}), cpu_backend());
  try {
    ex.run({});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("'images'"));
  }
  try {
    ex.run({{"images", Tensor::zeros({3, 2}, DType::f32)}});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("'images'"));
    EXPECT_THAT(e.what(), HasSubstr("[3,2]"));
  }
}

TEST(Executor, OutputsNeverShareStorage) {
  Graph g;
  Value x = ops::leaf(g, "x", {3}, DType::f32);
  Value a = ops::fill(g, 0.0, {3}, DType::f32);
  Value b = ops::fill(g, 0.0, {3}, DType::f32);  // merged with a by CSE
  Tensor xv = Tensor::zeros({3}, DType::f32);
  const auto r = evaluate(g, {x.id(), a.id(), b.id(), a.id()}, {{"x", xv}}, cpu_backend());
  EXPECT_NE(r[0].storage(), xv.storage());
  EXPECT_NE(r[1].storage(), r[2].storage());
  EXPECT_NE(r[1].storage(), r[3].storage());
}

TEST(Executor, KernelErrorsNameTheNode) {
  Graph g;
  Value x = ops::leaf(g, "x", {3, 2}, DType::f32);
  Value idx = ops::leaf(g, "idx", {1}, DType::i32);
  Value y = ops::gather(x, idx, 0);
  try {
    evaluate(g, {y.id()},
             {{"x", Tensor::zeros({3, 2}, DType::f32)}, {"idx", Tensor::from_vector({1}, {7}, DType::i32)}},
             cpu_backend());
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("while running %2 = gather(%0, %1)"));
  }
}

TEST(Executor, RepeatedRunsReuseTheArenaAndAreBitEqual) {
  Graph g;
  Value x = ops::leaf(g, "x", {3, 9, 9, 4}, DType::f32);
  Value w = ops::leaf(g, "w", {3, 3, 4, 5}, DType::f32);
  Value y = ops::sum(ops::tanh(ops::conv2d(x, w)));
  Value gw = grad(y, {w})[0];
  Executor ex(g, compile(g, {y.id(), gw.id()}), cpu_backend());
  Tensor xv = Tensor::zeros({3, 9, 9, 4}, DType::f32), wv = Tensor::zeros({3, 3, 4, 5}, DType::f32);
  for (int64_t i = 0; i < xv.numel(); ++i) xv.set_item(i, std::sin(static_cast<double>(i)));
  for (int64_t i = 0; i < wv.numel(); ++i) wv.set_item(i, std::cos(static_cast<double>(i)) * 0.1);
  const auto a = ex.run({{"x", xv}, {"w", wv}});
  const auto b = ex.run({{"x", xv}, {"w", wv}});
  EXPECT_EQ(std::memcmp(a[1].raw(), b[1].raw(), a[1].nbytes()), 0);
  EXPECT_EQ(a[0].item(0), b[0].item(0));
}

// On a backend that cannot record, graph replay still runs from fixed buffers: results
// must follow the feeds of each run, and outputs of one run must survive the next.
TEST(Executor, GraphReplayModeFollowsTheFeedsOfEveryRun) {
  Graph g;
  Value x = ops::leaf(g, "x", {4, 5}, DType::f32);
  Value y = ops::sum(ops::exp(x), {1});
  Executor replay(g, compile(g, {y.id(), x.id()}), cpu_backend());
  replay.set_graph_replay(true);
  std::vector<std::vector<Tensor>> kept;
  for (int run = 0; run < 3; ++run) {
    Tensor xv = Tensor::zeros({4, 5}, DType::f32);
    for (int64_t i = 0; i < xv.numel(); ++i) xv.set_item(i, std::sin(static_cast<double>(i + 7 * run)));
    kept.push_back(replay.run({{"x", xv}}));
    const auto eager = evaluate(g, {y.id()}, {{"x", xv}}, cpu_backend());
    EXPECT_EQ(std::memcmp(kept.back()[0].raw(), eager[0].raw(), eager[0].nbytes()), 0) << "run " << run;
    EXPECT_FALSE(replay.replaying());
  }
  EXPECT_NE(kept[0][0].item(0), kept[1][0].item(0));
  EXPECT_NE(kept[0][0].storage(), kept[1][0].storage());
}

// The CPU backend, except that it "records" as the GPU does: a recording keeps the values
// bound when it was made and replays the kernels on them, so a replay reads whatever those
// buffers hold then (parameters updated in place) and nothing bound later.
class RecordingCpuBackend final : public testing::CpuForwardingBackend {
 public:
  std::unique_ptr<RecordedWork> record(const std::function<void()>& launches) override {
    ++recorded;
    struct Work final : RecordedWork {
      std::function<void()> launches;
      void replay() override { launches(); }
    };
    auto w = std::make_unique<Work>();
    w->launches = launches;
    return w;
  }
  int recorded = 0;
};

// Feeds in the backend's memory are read in place; each new set of their addresses is
// recorded once (two alternating input buffers: two recordings), and every replay matches
// an eager evaluation of that run's feeds, including a parameter changed in place.
TEST(Executor, GraphReplayReadsResidentFeedsInPlaceAndRecordsEachAddressSetOnce) {
  Graph g;
  Value x = ops::leaf(g, "x", {4, 5}, DType::f32);
  Value w = ops::leaf(g, "w", {5}, DType::f32, LeafKind::parameter);
  Value y = ops::sum(ops::exp(x) * w, {1});
  RecordingCpuBackend b;
  Executor replay(g, compile(g, {y.id()}), b);
  replay.set_graph_replay(true);
  replay.set_output_views(true);
  Tensor w_value = Tensor::zeros({5}, DType::f32);
  std::array<Tensor, 2> inputs{Tensor::zeros({4, 5}, DType::f32), Tensor::zeros({4, 5}, DType::f32)};
  for (int run = 0; run < 6; ++run) {
    Tensor& xv = inputs[static_cast<size_t>(run % 2)];
    for (int64_t i = 0; i < xv.numel(); ++i) xv.set_item(i, std::sin(static_cast<double>(i + 7 * run)));
    for (int64_t i = 0; i < 5; ++i) w_value.set_item(i, 0.5 + 0.1 * static_cast<double>(run + i));  // in place
    const auto out = replay.run({{"x", xv}, {"w", w_value}});
    const auto eager = evaluate(g, {y.id()}, {{"x", xv}, {"w", w_value}}, cpu_backend());
    EXPECT_EQ(std::memcmp(out[0].raw(), eager[0].raw(), eager[0].nbytes()), 0) << "run " << run;
  }
  EXPECT_TRUE(replay.replaying());
  EXPECT_EQ(b.recorded, 2);  // run 0 eager, runs 1 and 2 recorded, the rest replayed
  EXPECT_EQ(replay.recordings(), 2u);
  // A third input buffer is a third recording; the oldest are dropped past four.
  for (int extra = 0; extra < 4; ++extra) {
    Tensor xv = Tensor::zeros({4, 5}, DType::f32);
    replay.run({{"x", xv}, {"w", w_value}});
  }
  EXPECT_LE(replay.recordings(), 4u);
}

}  // namespace
}  // namespace agilenn
