// CPU kernel benchmarks at the paper preset's feature-extractor shapes (batch 8): each
// op runs through the same executor the engine uses, so the numbers include dispatch.
// Counters: bytes = each input read once + the output written once; FLOPs where defined.
#include <benchmark/benchmark.h>

#include <cmath>
#include <functional>

#include "engine/ir/ops.h"
#include "engine/runtime/executor.h"

namespace agilenn {
namespace {

Tensor random_tensor(const Shape& s) {
  Tensor t = Tensor::zeros(s, DType::f32);
  float* p = t.data<float>();
  uint64_t state = 0x9e3779b97f4a7c15ULL;
  for (int64_t i = 0; i < t.numel(); ++i) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    p[i] = static_cast<float>(static_cast<double>(state >> 11) * 0x1.0p-53 * 2.0 - 1.0);
  }
  return t;
}

// Builds `op` over leaves of the given shapes and times Executor::run.
void run_op(benchmark::State& state, const std::vector<Shape>& shapes,
            const std::function<Value(Graph&, const std::vector<Value>&)>& build, double flops) {
  Graph g;
  std::vector<Value> leaves;
  Feeds feeds;
  double bytes = 0;
  for (size_t i = 0; i < shapes.size(); ++i) {
    const std::string name = "x" + std::to_string(i);
    leaves.push_back(ops::leaf(g, name, shapes[i], DType::f32));
    feeds[name] = random_tensor(shapes[i]);
    bytes += static_cast<double>(feeds[name].nbytes());
  }
  Value out = build(g, leaves);
  bytes += static_cast<double>(numel(out.shape())) * 4.0;
  Executor ex(g, compile(g, {out.id()}), cpu_backend());
  for (auto _ : state) benchmark::DoNotOptimize(ex.run(feeds));
  state.counters["GB/s"] = benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  if (flops > 0) state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

ops::Conv2dOptions same(int64_t stride, int64_t groups) {
  ops::Conv2dOptions o;
  o.padding = ops::Padding::same;
  o.stride = {stride, stride};
  o.groups = groups;
  return o;
}

constexpr int64_t kBatch = 8;

// FE stage 1: depthwise 3x3 stride 3 on the 96x96x3 input.
void BM_DepthwiseStride3(benchmark::State& s) {
  run_op(s, {{kBatch, 96, 96, 3}, {3, 3, 1, 3}},
         [](Graph&, auto& v) { return ops::conv2d(v[0], v[1], same(3, 3)); }, 2.0 * kBatch * 32 * 32 * 3 * 9);
}
// FE stage 2: depthwise 3x3 stride 1 on 32x32x4.
void BM_Depthwise32x32(benchmark::State& s) {
  run_op(s, {{kBatch, 32, 32, 4}, {3, 3, 1, 4}},
         [](Graph&, auto& v) { return ops::conv2d(v[0], v[1], same(1, 4)); }, 2.0 * kBatch * 32 * 32 * 4 * 9);
}
void BM_DepthwiseBackwardFilter(benchmark::State& s) {
  Graph probe;
  Value x = ops::leaf(probe, "x", {kBatch, 32, 32, 96}, DType::f32);
  Value w = ops::leaf(probe, "w", {3, 3, 1, 96}, DType::f32);
  const Attrs attrs = ops::conv2d(x, w, same(1, 96)).node().attrs;
  run_op(s, {{kBatch, 32, 32, 96}, {kBatch, 32, 32, 96}},
         [attrs](Graph&, auto& v) { return ops::conv2d_backward_filter(v[0], v[1], attrs, {3, 3, 1, 96}); },
         2.0 * kBatch * 32 * 32 * 96 * 9);
}
// FE pointwise to 24 channels, and an RP expansion 1x1 (16 -> 96).
void BM_Pointwise4To24(benchmark::State& s) {
  run_op(s, {{kBatch, 32, 32, 4}, {1, 1, 4, 24}}, [](Graph&, auto& v) { return ops::conv2d(v[0], v[1]); },
         2.0 * kBatch * 32 * 32 * 4 * 24);
}
void BM_Pointwise16To96(benchmark::State& s) {
  run_op(s, {{kBatch, 32, 32, 16}, {1, 1, 16, 96}}, [](Graph&, auto& v) { return ops::conv2d(v[0], v[1]); },
         2.0 * kBatch * 32 * 32 * 16 * 96);
}
void BM_Conv3x3Dense(benchmark::State& s) {
  run_op(s, {{kBatch, 32, 32, 24}, {3, 3, 24, 48}}, [](Graph&, auto& v) { return ops::conv2d(v[0], v[1], same(1, 1)); },
         2.0 * kBatch * 32 * 32 * 24 * 48 * 9);
}
void BM_Matmul(benchmark::State& s) {
  const int64_t n = s.range(0);
  run_op(s, {{n, n}, {n, n}}, [](Graph&, auto& v) { return ops::matmul(v[0], v[1]); },
         2.0 * static_cast<double>(n * n * n));
}
void BM_AddBroadcastBias(benchmark::State& s) {
  run_op(s, {{kBatch, 32, 32, 24}, {24}}, [](Graph&, auto& v) { return v[0] + v[1]; }, 0);
}
void BM_Relu6(benchmark::State& s) {
  run_op(s, {{kBatch, 32, 32, 96}}, [](Graph&, auto& v) { return ops::relu6(v[0]); }, 0);
}
void BM_ChannelSum(benchmark::State& s) {
  run_op(s, {{kBatch, 32, 32, 96}}, [](Graph&, auto& v) { return ops::sum(v[0], {0, 1, 2}); }, 0);
}
void BM_Softmax(benchmark::State& s) {
  run_op(s, {{256, 100}}, [](Graph&, auto& v) { return ops::softmax(v[0]); }, 0);
}

BENCHMARK(BM_DepthwiseStride3)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Depthwise32x32)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_DepthwiseBackwardFilter)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Pointwise4To24)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Pointwise16To96)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Conv3x3Dense)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Matmul)->Arg(128)->Arg(512)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_AddBroadcastBias)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Relu6)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ChannelSum)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Softmax)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace agilenn
