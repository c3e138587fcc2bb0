// The fused CUDA kernels (quantize, attribution_stats, their vjps, softmax_cross_entropy)
// against their twin, the CPU backend, which runs the same per-element math
// (kernels/shared); skipped without a GPU. CudaFused.*OnAKnownSample and the tie rules
// pin the CPU backend's values by hand and run everywhere.
// CudaReductionPaths.*: the reduction (fused_sum's included), softmax, argmin and matmul
// kernels against the CPU backend on shapes that reach every launch path (column sums cut into chunks, row
// reductions, the general strided path, contiguous and strided axes); skipped without a
// GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "engine/ir/ops.h"
#include "engine/runtime/executor.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/device.h"
#include "tests/gradcheck.h"
#include "tests/test_util.h"
#include "tests/gpu_test_util.h"

namespace agilenn::testing {
namespace {

// scaled_error with the absolute floor at rtol times the tensor's largest magnitude, so
// near-zero elements of a tensor are held to that tensor's own precision.
double magnitude_error(const Tensor& expect, const Tensor& got, double rtol) {
  const Tensor a = expect.to(DType::f64), b = got.to(DType::f64);
  double scale = 0;
  for (int64_t i = 0; i < a.numel(); ++i) scale = std::max(scale, std::abs(a.item(i)));
  return scaled_error(a, b, rtol, rtol * scale + 1e-30);
}

bool bit_equal(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() &&
         std::equal(a.data<float>(), a.data<float>() + a.numel(), b.data<float>(), b.data<float>() + b.numel(),
                    [](float x, float y) { return std::memcmp(&x, &y, sizeof(float)) == 0; });
}

// One op of a graph over float32 leaves x0, x1, ... evaluated on `backend`, on the host.
using Build = std::function<std::vector<Value>(const std::vector<Value>&)>;

std::vector<Tensor> run_op(const std::vector<Tensor>& inputs, const Build& build, Backend& backend) {
  Graph g;
  std::vector<Value> leaves;
  Feeds feeds;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const std::string name = "x" + std::to_string(i);
    leaves.push_back(ops::leaf(g, name, inputs[i].shape(), inputs[i].dtype()));
    feeds[name] = inputs[i];
  }
  std::vector<NodeId> ids;
  for (const Value& v : build(leaves)) ids.push_back(v.id());
  std::vector<Tensor> out = evaluate(g, ids, feeds, backend);
  for (Tensor& t : out) t = backend.to_host(t);
  return out;
}

Tensor cpu_quantize(const Tensor& x, const Tensor& c) {
  return run_op({x, c}, [](const std::vector<Value>& v) { return std::vector<Value>{ops::quantize(v[0], v[1])}; },
                cpu_backend())[0];
}

Tensor cpu_attribution_stats(const Tensor& d, const Tensor& a, int64_t k) {
  return run_op(
      {d, a}, [k](const std::vector<Value>& v) { return std::vector<Value>{ops::attribution_stats(v[0], v[1], k)}; },
      cpu_backend())[0];
}

Build quantize_backward_op(int64_t wrt) {
  return [wrt](const std::vector<Value>& v) { return std::vector<Value>{ops::quantize_backward(v[0], v[1], v[2], wrt)}; };
}

std::vector<Value> cross_entropy_op(const std::vector<Value>& v) { return {ops::softmax_cross_entropy(v[0], v[1])}; }

Tensor labels_for(int64_t rows, int64_t classes, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> pick(0, classes - 1);
  Tensor l = Tensor::zeros({rows}, DType::i32);
  for (int64_t i = 0; i < rows; ++i) l.set_item(i, static_cast<double>(pick(rng)));
  return l;
}

// [rows, classes]: one class, fewer than a warp, a warp, several warps, the paper's 100.
const std::vector<std::pair<int64_t, int64_t>> kCrossEntropyCases = {{1, 1}, {7, 3}, {33, 32}, {5, 77}, {64, 100}};

Build attribution_backward_op(int64_t k, int64_t wrt) {
  return [k, wrt](const std::vector<Value>& v) {
    return std::vector<Value>{ops::attribution_stats_backward(v[0], v[1], v[2], k, wrt)};
  };
}

Tensor cpu_attribution_stats_backward(const Tensor& d, const Tensor& a, const Tensor& g, int64_t k, int64_t wrt) {
  return run_op({d, a, g}, attribution_backward_op(k, wrt), cpu_backend())[0];
}

// Values in {±0.5, ±1}: |δ·a| takes three values, so each sample's extremes are tied.
Tensor tie_prone(const Shape& s, uint64_t seed) {
  Tensor t = random_tensor(s, DType::f32, seed, -1.0, 1.0);
  for (int64_t i = 0; i < t.numel(); ++i) t.set_item(i, (t.item(i) < 0 ? -0.5 : 0.5) * (std::abs(t.item(i)) < 0.5 ? 1 : 2));
  return t;
}


struct QuantizeCase {
  Shape x;
  int64_t centroids;
};
const std::vector<QuantizeCase> kQuantizeCases = {
    {{1}, 1}, {{7, 13}, 3}, {{3, 5, 5, 11}, 8}, {{257, 3}, 17}, {{2, 9, 7, 19}, 8}, {{4099}, 5}};

struct AttributionCase {
  Shape x;
  int64_t local;
};
const std::vector<AttributionCase> kAttributionCases = {
    {{1, 1, 1, 2}, 1}, {{3, 5, 7, 6}, 1}, {{5, 4, 3, 24}, 5}, {{2, 9, 11, 13}, 12}, {{7, 1, 33, 3}, 2}};

TEST(CudaFused, QuantizeBreaksDistanceTiesTowardTheFirstCentroid) {
  // x = 0.5 and 1.5 lie exactly midway between neighbouring centroids (all dyadic, so
  // the squared distances are exact and equal).
  const Tensor x = Tensor::from_vector({4}, {0.5, 1.5, -0.25, 3.0}, DType::f32);
  const Tensor up = Tensor::from_vector({3}, {0.0, 1.0, 2.0}, DType::f32);
  const Tensor down = Tensor::from_vector({3}, {2.0, 1.0, 0.0}, DType::f32);
  EXPECT_EQ(cpu_quantize(x, up).to_vector(), (std::vector<double>{0.0, 1.0, 0.0, 2.0}));
  EXPECT_EQ(cpu_quantize(x, down).to_vector(), (std::vector<double>{1.0, 2.0, 0.0, 2.0}));
}

TEST(CudaFused, AttributionStatsOnAKnownSample) {
  // One sample, 2 pixels, 3 channels, K = 1: |δ·a| = [1 4 9 | 2 0 6] per pixel row.
  const Tensor d = Tensor::from_vector({1, 1, 2, 3}, {1, -2, 3, 1, 0, -2}, DType::f32);
  const Tensor a = Tensor::from_vector({1, 1, 2, 3}, {1, -2, 3, 2, 5, -3}, DType::f32);
  // local = 1 + 2, total = 3 + (4 + 9 + 0 + 6), max remote 9 - min local 1.
  EXPECT_EQ(cpu_attribution_stats(d, a, 1).to_vector(), (std::vector<double>{3.0, 22.0, 8.0}));
}

TEST(CudaFused, AttributionStatsBackwardOnAKnownSample) {
  // As AttributionStatsOnAKnownSample: |δ·a| = [1 4 9 | 2 0 6], K = 1, and a second
  // remote 9 ties the max. g = [1, 10, 100]: local elements get g0 + g1 (the smaller,
  // 1, also -g2), remote ones g1 (the two 9s also g2 / 2); times sign(δ·a) times a.
  const Tensor d = Tensor::from_vector({1, 1, 2, 3}, {1, -2, 3, 1, 0, -3}, DType::f32);
  const Tensor a = Tensor::from_vector({1, 1, 2, 3}, {1, -2, 3, 2, 5, 3}, DType::f32);
  const Tensor g = Tensor::from_vector({1, 3}, {1, 10, 100}, DType::f32);
  EXPECT_EQ(cpu_attribution_stats_backward(d, a, g, 1, 0).to_vector(),
            (std::vector<double>{-89.0, -20.0, 180.0, 22.0, 0.0, -180.0}));
  EXPECT_EQ(cpu_attribution_stats_backward(d, a, g, 1, 1).to_vector(),
            (std::vector<double>{-89.0, -20.0, 180.0, 11.0, 0.0, 180.0}));
}

// ---- CUDA kernels against the CPU backend (GPU)

// Elementwise and order-free: the kernel calls the CPU's function on the same floats,
// so it must agree bit for bit.
TEST(CudaFused, QuantizeKernelMatchesTheCpuExactly) {
  AGILENN_SKIP_WITHOUT_GPU();
  std::vector<QuantizeCase> cases = kQuantizeCases;
  cases.push_back({{(1 << 20) + 3}, 8});
  uint64_t seed = 200;
  for (const QuantizeCase& qc : cases) {
    const Tensor x = random_tensor(qc.x, DType::f32, seed++, -1.0, 7.0);
    const Tensor c = random_tensor({qc.centroids}, DType::f32, seed++, 0.0, 6.0);
    const Tensor gpu = run_op(
        {x, c}, [](const std::vector<Value>& v) { return std::vector<Value>{ops::quantize(v[0], v[1])}; },
        cuda_backend())[0];
    EXPECT_TRUE(bit_equal(cpu_quantize(x, c), gpu)) << shape_str(qc.x) << " J=" << qc.centroids;
  }
  const Tensor x = Tensor::from_vector({4}, {0.5, 1.5, -0.25, 3.0}, DType::f32);
  const Tensor down = Tensor::from_vector({3}, {2.0, 1.0, 0.0}, DType::f32);
  const Tensor gpu = run_op(
      {x, down}, [](const std::vector<Value>& v) { return std::vector<Value>{ops::quantize(v[0], v[1])}; },
      cuda_backend())[0];
  EXPECT_EQ(gpu.to_vector(), (std::vector<double>{1.0, 2.0, 0.0, 2.0}));
}

// The kernel sums each sample in a different order (the sample cut into parts, 256
// strided partial sums and a tree in each, then the parts in order). All terms are
// non-negative, so each order's relative error is a few float epsilons times the (log of
// the) term count: 5e-5 of the largest value covers ~25k terms per sample with margin.
// The extremes (max - min) are order-free. The cut depends only on the shape, so two
// runs agree bit for bit.
TEST(CudaFused, AttributionStatsKernelMatchesTheCpu) {
  AGILENN_SKIP_WITHOUT_GPU();
  std::vector<AttributionCase> cases = kAttributionCases;
  cases.push_back({{64, 32, 32, 24}, 5});  // the paper's feature map
  uint64_t seed = 300;
  for (const AttributionCase& ac : cases) {
    const Tensor d = random_tensor(ac.x, DType::f32, seed++, -2.0, 2.0);
    const Tensor a = random_tensor(ac.x, DType::f32, seed++, -3.0, 3.0);
    const int64_t k = ac.local;
    const Tensor gpu = run_op(
        {d, a}, [k](const std::vector<Value>& v) { return std::vector<Value>{ops::attribution_stats(v[0], v[1], k)}; },
        cuda_backend())[0];
    const Tensor cpu = cpu_attribution_stats(d, a, k);
    EXPECT_LE(magnitude_error(cpu, gpu, 5e-5), 1.0) << shape_str(ac.x) << " K=" << k;
    const Tensor again = run_op(
        {d, a}, [k](const std::vector<Value>& v) { return std::vector<Value>{ops::attribution_stats(v[0], v[1], k)}; },
        cuda_backend())[0];
    EXPECT_TRUE(bit_equal(gpu, again)) << shape_str(ac.x) << " K=" << k << ": not reproducible";
    for (int64_t s = 0; s < ac.x[0]; ++s)
      EXPECT_EQ(cpu.item(s * 3 + 2), gpu.item(s * 3 + 2)) << shape_str(ac.x) << " sample " << s;
  }
}

// The kernels do the CPU's float operations, but the GPU's expf may differ from the
// host's by an ulp, and the centroids' sums run in another order (per-thread strided
// sums, block trees, then the blocks'): float32 round-off of the tensor's magnitude.
TEST(CudaFused, QuantizeBackwardKernelsMatchTheCpu) {
  AGILENN_SKIP_WITHOUT_GPU();
  std::vector<QuantizeCase> cases = kQuantizeCases;
  cases.push_back({{5, 7, 9}, 40});
  cases.push_back({{(1 << 18) + (1 << 16) + 3}, 8});  // more blocks than the 1024 of the centroids' sums
  uint64_t seed = 700;
  for (const QuantizeCase& qc : cases) {
    const Tensor x = random_tensor(qc.x, DType::f32, seed++, -1.0, 7.0);
    const Tensor c = random_tensor({qc.centroids}, DType::f32, seed++, 0.0, 6.0);
    const Tensor g = random_tensor(qc.x, DType::f32, seed++, -1.0, 1.0);
    for (int64_t wrt : {0, 1}) {
      const Tensor gpu = run_op({x, c, g}, quantize_backward_op(wrt), cuda_backend())[0];
      EXPECT_LE(magnitude_error(run_op({x, c, g}, quantize_backward_op(wrt), cpu_backend())[0], gpu, 2e-4), 1.0)
          << shape_str(qc.x) << " J=" << qc.centroids << " wrt=" << wrt;
    }
  }
  // More centroids than a thread of the kernels keeps: refused, naming the op.
  const Tensor x = random_tensor({9}, DType::f32, 1, -1.0, 7.0), g = random_tensor({9}, DType::f32, 2, -1.0, 1.0);
  const Tensor c = random_tensor({65}, DType::f32, 3, 0.0, 6.0);
  EXPECT_NE(error_of([&] { run_op({x, c, g}, quantize_backward_op(0), cuda_backend()); }).find("quantize_backward"),
            std::string::npos);
}

// The warp sums Σ exp(x - max) in another order and the GPU's expf and logf may differ
// from the host's by an ulp: float32 round-off of the largest loss. The vjp's kernels
// (softmax, one_hot, sub, mul) are checked by test_gpu_parity.
TEST(CudaFused, CrossEntropyKernelMatchesTheCpu) {
  AGILENN_SKIP_WITHOUT_GPU();
  std::vector<std::pair<int64_t, int64_t>> cases = kCrossEntropyCases;
  cases.push_back({100003, 10});  // more rows than warps in the grid
  uint64_t seed = 900;
  for (const auto& [rows, classes] : cases) {
    const Tensor x = random_tensor({rows, classes}, DType::f32, seed++, -30.0, 30.0);
    const Tensor l = labels_for(rows, classes, seed++);
    const Tensor gpu = run_op({x, l}, cross_entropy_op, cuda_backend())[0];
    EXPECT_LE(magnitude_error(run_op({x, l}, cross_entropy_op, cpu_backend())[0], gpu, 1e-5), 1.0) << rows << "x" << classes;
  }
  // A label outside the classes: the CPU backend's error, raised from the kernel's record.
  const Tensor x = random_tensor({2, 4}, DType::f32, 1, -1.0, 1.0);
  const Tensor bad = Tensor::from_vector({2}, {1, -1}, DType::i32);
  const std::string cpu = error_of([&] { run_op({x, bad}, cross_entropy_op, cpu_backend()); });
  ASSERT_NE(cpu, "");
  EXPECT_EQ(error_of([&] { run_op({x, bad}, cross_entropy_op, cuda_backend()); }), cpu);
}

// Extremes and tie counts are order-free and the per-element math is the CPU's: the
// kernel must agree bit for bit.
TEST(CudaFused, AttributionStatsBackwardKernelMatchesTheCpuExactly) {
  AGILENN_SKIP_WITHOUT_GPU();
  std::vector<AttributionCase> cases = kAttributionCases;
  cases.push_back({{64, 32, 32, 24}, 5});  // the paper's feature map
  uint64_t seed = 500;
  for (const AttributionCase& ac : cases)
    for (bool ties : {false, true}) {
      const Tensor d = ties ? tie_prone(ac.x, seed++) : random_tensor(ac.x, DType::f32, seed++, -2.0, 2.0);
      const Tensor a = ties ? tie_prone(ac.x, seed++) : random_tensor(ac.x, DType::f32, seed++, -3.0, 3.0);
      const Tensor g = random_tensor({ac.x[0], 3}, DType::f32, seed++, -1.0, 1.0);
      for (int64_t wrt : {0, 1}) {
        const Tensor gpu = run_op({d, a, g}, attribution_backward_op(ac.local, wrt), cuda_backend())[0];
        EXPECT_TRUE(bit_equal(cpu_attribution_stats_backward(d, a, g, ac.local, wrt), gpu))
            << shape_str(ac.x) << " K=" << ac.local << " wrt=" << wrt << (ties ? " ties" : "");
      }
    }
}

// ---- reductions, softmax, argmin and matmul against the CPU backend (GPU)

// As test_gpu_parity: float32 sums in another order, relative to the tensor's magnitude.
constexpr double kRtol = 2e-4;

void expect_parity(const std::vector<Tensor>& inputs, const Build& build, const std::string& what) {
  const auto cpu = run_op(inputs, build, cpu_backend());
  const auto gpu = run_op(inputs, build, cuda_backend());
  ASSERT_EQ(cpu.size(), gpu.size());
  for (size_t i = 0; i < cpu.size(); ++i) {
    ASSERT_EQ(cpu[i].shape(), gpu[i].shape()) << what;
    if (cpu[i].dtype() == DType::i32)
      EXPECT_EQ(cpu[i].to_vector(), gpu[i].to_vector()) << what << " output " << i;
    else
      EXPECT_LE(magnitude_error(cpu[i], gpu[i], kRtol), 1.0) << what << " output " << i;
  }
}

struct ReduceCase {
  Shape x;
  std::vector<int64_t> axes;
};

TEST(CudaReductionPaths, SumMaxMinMatchTheCpuOnEveryLaunchPath) {
  AGILENN_SKIP_WITHOUT_GPU();
  const std::vector<ReduceCase> cases = {
      {{70001, 24}, {0}},              // leading axis, few columns: chunked column sums
      {{64, 32, 32, 24}, {0, 1, 2}},   // batch-norm statistics
      {{300, 1000}, {0}},              // leading axis, many columns
      {{5, 3, 7}, {0}},                // short columns, no chunks
      {{3, 1000, 40}, {1}},            // middle axis: batched column sums
      {{4, 1, 257, 1, 3}, {2}},        // unit axes dropped around the middle axis
      {{13, 5000}, {1}},               // trailing axis: one block per row
      {{1000, 7}, {1}},                // short rows: several rows per block
      {{6, 7, 8, 9}, {0, 2}},          // general strided path
      {{6, 7, 8, 9}, {1, 3}},          // general path, trailing reduced
      {{2, 3, 2, 3, 2, 3, 2, 3, 2}, {0, 2, 4, 6, 8}},  // rank 9, alternating
      {{(1 << 20) + 7}, {}},           // everything to one value
      {{3, 4}, {}},
      {{1, 1}, {0}},
      {{4, 0, 3}, {1}},                // empty reduction: the identity
      {{0, 5}, {1}},                   // no outputs
  };
  uint64_t seed = 400;
  for (const ReduceCase& rc : cases) {
    const Tensor x = random_tensor(rc.x, DType::f32, seed++, -1.0, 1.0);
    const auto axes = rc.axes;
    expect_parity(
        {x},
        [axes](const std::vector<Value>& v) {
          return std::vector<Value>{ops::sum(v[0], axes), ops::max(v[0], axes, true), ops::min(v[0], axes)};
        },
        shape_str(rc.x));
  }
}

// fused_sum reads its elements through the fused program in the same column reduction:
// a batch norm's variance, (x - c)², over the same launch paths as sum's column sums,
// the per-column c read broadcast through a broadcast_to instruction.
TEST(CudaReductionPaths, FusedSumMatchesTheCpuOnTheColumnPaths) {
  AGILENN_SKIP_WITHOUT_GPU();
  const std::vector<ReduceCase> cases = {
      {{70001, 24}, {0}},             // chunked column sums
      {{64, 32, 32, 24}, {0, 1, 2}},  // batch-norm statistics
      {{300, 1000}, {0}},             // many columns
      {{5, 3, 7}, {0, 1}},            // short columns, no chunks
  };
  uint64_t seed = 500;
  for (const ReduceCase& rc : cases) {
    const Tensor x = random_tensor(rc.x, DType::f32, seed++, -1.0, 1.0);
    const Tensor c = random_tensor({rc.x.back()}, DType::f32, seed++, -0.5, 0.5);
    const Shape shape = rc.x;
    const auto axes = rc.axes;
    expect_parity(
        {x, c},
        [shape, axes](const std::vector<Value>& v) {
          return std::vector<Value>{
              ops::fused_sum(v, {{"broadcast_to", 1}, {"sub", 0, 2}, {"mul", 3, 3}}, shape, axes, false)};
        },
        "fused_sum " + shape_str(rc.x));
  }
}

TEST(CudaReductionPaths, ReductionsAreBitReproducible) {
  AGILENN_SKIP_WITHOUT_GPU();
  const Tensor x = random_tensor({70001, 24}, DType::f32, 7, -1.0, 1.0);
  const Build build = [](const std::vector<Value>& v) {
    return std::vector<Value>{ops::sum(v[0], {0}), ops::sum(v[0], {1}), ops::softmax(v[0], 0)};
  };
  const auto first = run_op({x}, build, cuda_backend());
  const auto second = run_op({x}, build, cuda_backend());
  for (size_t i = 0; i < first.size(); ++i) EXPECT_TRUE(bit_equal(first[i], second[i])) << "output " << i;
}

TEST(CudaReductionPaths, ArgminFindsTheFirstMinimumAlongAnyAxis) {
  AGILENN_SKIP_WITHOUT_GPU();
  // Values drawn from {0, 1, 2, 3}: many ties, which the first position must win.
  for (const auto& [shape, axis] : std::vector<std::pair<Shape, int64_t>>{
           {{37, 1000}, 1}, {{37, 1000}, 0}, {{5, 300, 7}, 1}, {{9, 3}, -1}, {{1, 513}, 1}, {{6, 1}, 1}}) {
    Tensor x = random_tensor(shape, DType::f32, 500 + static_cast<uint64_t>(axis + 3), 0.0, 4.0);
    for (int64_t i = 0; i < x.numel(); ++i) x.set_item(i, std::floor(x.item(i)));
    const int64_t ax = axis;
    expect_parity(
        {x}, [ax](const std::vector<Value>& v) { return std::vector<Value>{ops::argmin(v[0], ax)}; },
        shape_str(shape) + " axis " + std::to_string(axis));
  }
}

TEST(CudaReductionPaths, SoftmaxAndLogSoftmaxMatchTheCpuAlongAnyAxis) {
  AGILENN_SKIP_WITHOUT_GPU();
  for (const auto& [shape, axis] : std::vector<std::pair<Shape, int64_t>>{
           {{37, 1000}, 1}, {{37, 1000}, 0}, {{5, 300, 7}, 1}, {{9, 3}, -1}, {{100, 10}, 1}, {{6, 1}, 1}}) {
    // Large logits: without the max subtraction exp would overflow.
    const Tensor x = random_tensor(shape, DType::f32, 600 + static_cast<uint64_t>(axis + 3), -60.0, 60.0);
    const int64_t ax = axis;
    expect_parity(
        {x},
        [ax](const std::vector<Value>& v) {
          return std::vector<Value>{ops::softmax(v[0], ax), ops::log_softmax(v[0], ax)};
        },
        shape_str(shape) + " axis " + std::to_string(axis));
  }
}

TEST(CudaReductionPaths, MatmulMatchesTheCpuForEveryTransposeCombination) {
  AGILENN_SKIP_WITHOUT_GPU();
  const int64_t m = 37, n = 53, k = 129;
  uint64_t seed = 700;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      const Tensor a = random_tensor(ta ? Shape{k, m} : Shape{m, k}, DType::f32, seed++, -1.0, 1.0);
      const Tensor b = random_tensor(tb ? Shape{n, k} : Shape{k, n}, DType::f32, seed++, -1.0, 1.0);
      expect_parity(
          {a, b},
          [ta, tb](const std::vector<Value>& v) { return std::vector<Value>{ops::matmul(v[0], v[1], ta, tb)}; },
          "matmul ta=" + std::to_string(ta) + " tb=" + std::to_string(tb));
    }
  // An empty inner dimension gives zeros.
  const auto z = run_op({Tensor::zeros({3, 0}, DType::f32), Tensor::zeros({0, 4}, DType::f32)},
                        [](const std::vector<Value>& v) { return std::vector<Value>{ops::matmul(v[0], v[1])}; },
                        cuda_backend());
  EXPECT_EQ(z[0].to_vector(), std::vector<double>(12, 0.0));
}

}  // namespace
}  // namespace agilenn::testing
