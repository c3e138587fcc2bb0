// The GPU's indexing kernels against the CPU backend where they differ most: gather_backward
// on both of its paths (each output's indices added in index order: the CPU's sum bit for
// bit, run after run), and indices outside their range, which GPU kernels record and the
// host raises with the CPU's error. Skipped without a GPU.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <random>

#include "engine/ir/ops.h"
#include "engine/runtime/executor.h"
#include "engine/train/trainer.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/device.h"
#include "tests/agilenn_trainers.h"
#include "tests/test_util.h"
#include "tests/gpu_test_util.h"

namespace agilenn::testing {
namespace {

Tensor random_indices(int64_t count, int64_t dim, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> u(0, static_cast<int32_t>(dim - 1));
  Tensor t = Tensor::zeros({count}, DType::i32);
  for (int64_t i = 0; i < count; ++i) t.set_item(i, u(rng));
  return t;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.nbytes() == b.nbytes() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

struct BackwardCase {
  Shape g;  // [outer, count, inner] laid out with the index axis at `axis`
  int64_t axis, dim;
  const char* path;
};

TEST(CudaIndexing, GatherBackwardIsTheCpusSumBitForBitOnBothPaths) {
  AGILENN_SKIP_WITHOUT_GPU();
  const std::vector<BackwardCase> cases = {
      {{4000, 7}, 0, 50, "scan"},             // 350 outputs × 4000 indices
      {{3, 100000}, 1, 8, "sorted"},          // few outputs, many indices
      {{100000, 16}, 0, 64, "sorted"},        // 1024 outputs × 1e5 indices: past the scan's budget
      {{2, 300000, 3}, 1, 1000, "sorted"},    // outer and inner, many rows
  };
  uint64_t seed = 11;
  for (const BackwardCase& c : cases) {
    Graph graph;
    Value g = ops::leaf(graph, "g", c.g, DType::f32);
    Value idx = ops::leaf(graph, "idx", {c.g[static_cast<size_t>(c.axis)]}, DType::i32);
    Value y = ops::gather_backward(g, idx, c.axis, c.dim);
    const Feeds feeds{{"g", random_tensor(c.g, DType::f32, seed)}, {"idx", random_indices(idx.shape()[0], c.dim, seed + 1)}};
    seed += 2;
    const Tensor cpu = evaluate(graph, {y.id()}, feeds, cpu_backend())[0];
    const Tensor gpu1 = cuda_backend().to_host(evaluate(graph, {y.id()}, feeds, cuda_backend())[0]);
    const Tensor gpu2 = cuda_backend().to_host(evaluate(graph, {y.id()}, feeds, cuda_backend())[0]);
    EXPECT_TRUE(same_bits(cpu, gpu1)) << c.path << " " << shape_str(c.g);
    EXPECT_TRUE(same_bits(gpu1, gpu2)) << c.path << " " << shape_str(c.g) << ": not reproducible";
  }
}

// Each op with an index input, given one index outside its range.
struct FaultCase {
  const char* what;
  std::function<Value(Graph&)> build;  // reads the leaf "idx" [6] and whatever floats it makes
  Shape x;
  int64_t bad_value;
};

TEST(CudaIndexing, AnIndexOutsideItsRangeRaisesTheCpusError) {
  AGILENN_SKIP_WITHOUT_GPU();
  auto idx_leaf = [](Graph& g) { return ops::leaf(g, "idx", {6}, DType::i32); };
  const std::vector<FaultCase> cases = {
      {"gather", [&](Graph& g) { return ops::gather(ops::leaf(g, "x", {10, 3}, DType::f32), idx_leaf(g), 0); },
       {10, 3}, 10},
      {"gather negative", [&](Graph& g) { return ops::gather(ops::leaf(g, "x", {10, 3}, DType::f32), idx_leaf(g), 0); },
       {10, 3}, -2},
      {"gather_backward", [&](Graph& g) {
         return ops::gather_backward(ops::leaf(g, "x", {6, 3}, DType::f32), idx_leaf(g), 0, 10); }, {6, 3}, 17},
      {"one_hot", [&](Graph& g) { return ops::one_hot(idx_leaf(g), 10, DType::f32) + ops::leaf(g, "x", {6, 10}, DType::f32); },
       {6, 10}, 10},
      {"softmax_cross_entropy", [&](Graph& g) {
         return ops::softmax_cross_entropy(ops::leaf(g, "x", {6, 10}, DType::f32), idx_leaf(g)); }, {6, 10}, 11},
  };
  for (const FaultCase& c : cases) {
    Graph graph;
    const Value y = c.build(graph);
    Tensor idx = random_indices(6, 6, 3);
    idx.set_item(4, static_cast<double>(c.bad_value));
    const Feeds feeds{{"x", random_tensor(c.x, DType::f32, 5)}, {"idx", idx}};
    const std::string cpu = error_of([&] { evaluate(graph, {y.id()}, feeds, cpu_backend()); });
    ASSERT_NE(cpu, "") << c.what;
    EXPECT_EQ(error_of([&] { evaluate(graph, {y.id()}, feeds, cuda_backend()); }), cpu) << c.what;
    // The fault was taken: the same graph with good indices runs clean afterwards.
    idx.set_item(4, 1);
    const Feeds good{{"x", feeds.at("x")}, {"idx", idx}};
    EXPECT_EQ(error_of([&] { evaluate(graph, {y.id()}, good, cuda_backend()); }), "") << c.what;
  }
}

TEST(CudaIndexing, ABadLabelStopsATrainingStepBeforeTheUpdateWithTheCpusError) {
  AGILENN_SKIP_WITHOUT_GPU();
  train::AgileNNStepOptions opt;
  opt.classes = 10;
  opt.batch = 8;
  const AgileNNTrainers setup(opt, 3);
  auto trainer = [&](Backend& b, bool replay) { return setup.make(b, 10, replay); };
  const int64_t side = opt.preset.input_size;
  const data::SyntheticDataset ds(10, side, side, 3, 64, 9);
  const data::Batch good = ds.batch(0, 8);
  Tensor bad_labels = good.labels.clone();
  bad_labels.set_item(5, 10);
  auto cpu = trainer(cpu_backend(), false);
  const std::string want = error_of([&] { cpu->step(good.images, bad_labels); });
  ASSERT_NE(want, "");
  for (bool replay : {false, true}) {
    auto gpu = trainer(cuda_backend(), replay);
    if (replay) {  // the first run goes kernel by kernel, the second records; the bad step is recorded and replayed
      gpu->step(good.images, good.labels);
      gpu->step(good.images, good.labels);
    }
    const nn::TensorMap before = gpu->host_values();
    EXPECT_EQ(error_of([&] { gpu->step(good.images, bad_labels); }), want) << (replay ? "graph replay" : "");
    const nn::TensorMap after = gpu->host_values();
    for (const auto& [name, t] : before)
      EXPECT_TRUE(same_bits(t, after.at(name))) << name << " changed by the failed step";
  }
}

}  // namespace
}  // namespace agilenn::testing
