// CPU kernel benchmarks. Every op runs through the same executor the engine uses, so the
// numbers include dispatch. Counters (bench/common.h): MB and MFLOP per run, GB/s and
// GFLOP/s in the wall time per run, and %BW / %FLOP of the CPU ceilings measured at start.
//
// The hand-written kernels against their baselines (bench/kernel_cases.h), at the tiny and
// paper presets' shapes and one large shape:
//   BM_Depthwise/cpu/<shape>/<fwd|dgrad|wgrad>/<kernel|dense_gemm>
//   BM_Quantize/cpu/<shape>/<kernel|unfused|reference>
//   BM_AttributionStats/cpu/<shape>/<kernel|unfused>
//   BM_QuantizeBackward/cpu/<shape>/<dx|dc>/<kernel|unfused>
//   BM_AttributionStatsBackward/cpu/<shape>/<ddelta|da>/<kernel|unfused>
//   BM_SoftmaxCrossEntropy/cpu/<shape>/<kernel|unfused>
// and the library-backed and primitive ops of the paper preset's feature extractor
// (batch 8): BM_Pointwise*, BM_Conv3x3Dense, BM_Matmul, BM_AddBroadcastBias, ...
#include <benchmark/benchmark.h>

#include "bench/common.h"
#include "bench/kernel_cases.h"
#include "engine/ir/ops.h"
#include "engine/runtime/executor.h"

namespace agilenn::bench {
namespace {

// Builds the case's graph over random leaves and times Executor::run on the CPU backend
// (with the fusion pass where `fuse`).
void run_cpu(benchmark::State& state, const OpCase& c, bool fuse = false) {
  guarded(state, [&] {
    Graph g;
    std::vector<Value> leaves;
    Feeds feeds;
    for (size_t i = 0; i < c.inputs.size(); ++i) {
      const std::string name = "x" + std::to_string(i);
      leaves.push_back(ops::leaf(g, name, c.inputs[i].shape, c.inputs[i].dtype));
      feeds[name] = random_input(c.inputs[i], i + 1);
    }
    Value out = c.build(g, leaves);
    Work work = c.work;
    if (work.bytes <= 0) {  // default: inputs read once, the output written once
      for (const auto& [name, t] : feeds) work.bytes += static_cast<double>(t.nbytes());
      work.bytes += static_cast<double>(numel(out.shape())) * 4.0;
    }
    CompileOptions options;
    options.fuse = fuse;
    Executor ex(g, compile(g, {out.id()}, options), cpu_backend());
    benchmark::DoNotOptimize(ex.run(feeds));  // warm-up: first touch of the arena
    LoopTimer timer;
    timer.start();
    for (auto _ : state) benchmark::DoNotOptimize(ex.run(feeds));
    set_rate_counters(state, work, cpu_ceilings(), timer.seconds_per_iteration(state));
    if (!c.label.empty()) state.SetLabel(c.label);
  });
}

void register_hand_written() {
  for (const DepthwiseShape& d : depthwise_shapes(false))
    for (ConvPass pass : {ConvPass::forward, ConvPass::data_grad, ConvPass::filter_grad})
      for (bool dense : {false, true}) {
        const std::string name = "BM_Depthwise/cpu/" + d.name + "/" + pass_name(pass) + "/" +
                                 (dense ? "dense_gemm" : "kernel");
        benchmark::RegisterBenchmark(name.c_str(), [d, pass, dense](benchmark::State& s) {
          run_cpu(s, depthwise_case(d, pass, dense));
        })->UseRealTime()->Unit(benchmark::kMicrosecond);
      }
  for (const QuantizeShape& q : quantize_shapes(false))
    for (QuantizeImpl impl : {QuantizeImpl::kernel, QuantizeImpl::unfused, QuantizeImpl::reference}) {
      const std::string name = "BM_Quantize/cpu/" + q.name + "/" + impl_name(impl);
      benchmark::RegisterBenchmark(name.c_str(), [q, impl](benchmark::State& s) { run_cpu(s, quantize_case(q, impl)); })
          ->UseRealTime()
          ->Unit(benchmark::kMicrosecond);
    }
  for (const AttributionShape& a : attribution_shapes(false))
    for (bool fused : {true, false}) {
      const std::string name = "BM_AttributionStats/cpu/" + a.name + "/" + (fused ? "kernel" : "unfused");
      benchmark::RegisterBenchmark(name.c_str(), [a, fused](benchmark::State& s) {
        run_cpu(s, attribution_case(a, fused));
      })->UseRealTime()->Unit(benchmark::kMicrosecond);
    }
  for (const QuantizeShape& q : quantize_shapes(false))
    for (int64_t wrt : {0, 1})
      for (bool fused : {true, false}) {
        const std::string name = "BM_QuantizeBackward/cpu/" + q.name + "/" + (wrt == 0 ? "dx" : "dc") + "/" +
                                 (fused ? "kernel" : "unfused");
        benchmark::RegisterBenchmark(name.c_str(), [q, wrt, fused](benchmark::State& s) {
          run_cpu(s, quantize_backward_case(q, wrt, fused));
        })->UseRealTime()->Unit(benchmark::kMicrosecond);
      }
  for (const AttributionShape& a : attribution_shapes(false))
    for (int64_t wrt : {0, 1})
      for (bool fused : {true, false}) {
        const std::string name = "BM_AttributionStatsBackward/cpu/" + a.name + "/" + (wrt == 0 ? "ddelta" : "da") +
                                 "/" + (fused ? "kernel" : "unfused");
        benchmark::RegisterBenchmark(name.c_str(), [a, wrt, fused](benchmark::State& s) {
          run_cpu(s, attribution_backward_case(a, wrt, fused));
        })->UseRealTime()->Unit(benchmark::kMicrosecond);
      }
  for (const CrossEntropyShape& x : cross_entropy_shapes(false))
    for (bool fused : {true, false}) {
      const std::string name = "BM_SoftmaxCrossEntropy/cpu/" + x.name + "/" + (fused ? "kernel" : "unfused");
      benchmark::RegisterBenchmark(name.c_str(), [x, fused](benchmark::State& s) {
        run_cpu(s, cross_entropy_case(x, fused));
      })->UseRealTime()->Unit(benchmark::kMicrosecond);
    }
}

const bool registered = (register_hand_written(), true);

// ---- library-backed and primitive ops at the paper preset's shapes (batch 8)

constexpr int64_t kBatch = 8;

OpCase simple(std::vector<Shape> shapes, std::function<Value(Graph&, const std::vector<Value>&)> build, double flops) {
  OpCase c;
  for (Shape& s : shapes) c.inputs.push_back({std::move(s)});
  c.build = std::move(build);
  c.work.flops = flops;
  return c;
}

// FE pointwise to 24 channels, and an RP expansion 1x1 (16 -> 96): GEMMs over pixels.
void BM_Pointwise4To24(benchmark::State& s) {
  run_cpu(s, simple({{kBatch, 32, 32, 4}, {1, 1, 4, 24}}, [](Graph&, auto& v) { return ops::conv2d(v[0], v[1]); },
                    2.0 * kBatch * 32 * 32 * 4 * 24));
}
void BM_Pointwise16To96(benchmark::State& s) {
  run_cpu(s, simple({{kBatch, 32, 32, 16}, {1, 1, 16, 96}}, [](Graph&, auto& v) { return ops::conv2d(v[0], v[1]); },
                    2.0 * kBatch * 32 * 32 * 16 * 96));
}
void BM_Conv3x3Dense(benchmark::State& s) {
  run_cpu(s, simple({{kBatch, 32, 32, 24}, {3, 3, 24, 48}},
                    [](Graph&, auto& v) { return ops::conv2d(v[0], v[1], same_padding_conv(1, 1)); },
                    2.0 * kBatch * 32 * 32 * 24 * 48 * 9));
}
void BM_Matmul(benchmark::State& s) {
  const int64_t n = s.range(0);
  run_cpu(s, simple({{n, n}, {n, n}}, [](Graph&, auto& v) { return ops::matmul(v[0], v[1]); },
                    2.0 * static_cast<double>(n * n * n)));
}
void BM_AddBroadcastBias(benchmark::State& s) {
  run_cpu(s, simple({{kBatch, 32, 32, 24}, {24}}, [](Graph&, auto& v) { return v[0] + v[1]; }, 0));
}
void BM_Relu6(benchmark::State& s) {
  run_cpu(s, simple({{kBatch, 32, 32, 96}}, [](Graph&, auto& v) { return ops::relu6(v[0]); }, 0));
}
void BM_ChannelSum(benchmark::State& s) {
  run_cpu(s, simple({{kBatch, 32, 32, 96}}, [](Graph&, auto& v) { return ops::sum(v[0], {0, 1, 2}); }, 0));
}
// A batch norm's normalisation and clamp as the fusion pass runs it in a step: one fused
// loop (five instructions) over the tiny preset's widest activation.
void BM_FusedBatchNormRelu6(benchmark::State& s) {
  const Shape x{32, 14, 14, 64}, channel{64};
  run_cpu(s,
          simple({x, channel, channel, channel, channel},
                 [](Graph&, auto& v) { return ops::relu6((v[0] - v[1]) * v[2] * v[3] + v[4]); }, 0),
          true);
}
// Its backward's column sum of the clamp's gradient, recomputed from x and the incoming
// gradient (as the fusion pass runs it in a step), at the paper preset's widest activation.
void BM_FusedBatchNormRelu6GradSum(benchmark::State& s) {
  const Shape x{kBatch, 32, 32, 144}, channel{144};
  run_cpu(s,
          simple({x, channel, channel, channel, x},
                 [](Graph&, auto& v) {
                   return ops::sum(ops::clamp_grad((v[0] - v[1]) * v[2] + v[3], v[4], 0.0, 6.0), {0, 1, 2});
                 },
                 0),
          true);
}
void BM_Softmax(benchmark::State& s) {
  run_cpu(s, simple({{256, 100}}, [](Graph&, auto& v) { return ops::softmax(v[0]); }, 0));
}

BENCHMARK(BM_Pointwise4To24)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Pointwise16To96)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Conv3x3Dense)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Matmul)->Arg(128)->Arg(512)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_AddBroadcastBias)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Relu6)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ChannelSum)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_FusedBatchNormRelu6)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_FusedBatchNormRelu6GradSum)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Softmax)->UseRealTime()->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace agilenn::bench
