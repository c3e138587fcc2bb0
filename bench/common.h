// Shared pieces of agilenn-bench: the device ceilings measured at start, the rate
// counters every kernel benchmark reports against them, random inputs, and the guard
// that turns an exception (a missing kernel, no GPU) into a skipped benchmark.
#pragma once

#include <benchmark/benchmark.h>

#include <cstdint>
#include <exception>
#include <functional>
#include <iosfwd>
#include <string>

#include "engine/core/tensor.h"

namespace agilenn::bench {

// What one device sustains: copy bandwidth (bytes read + bytes written per second) and
// float32 GEMM throughput (FLOP/s), each the best of several timed runs.
struct Ceilings {
  double bytes_per_s = 0;
  double flops = 0;       // float32 GEMM, no reduced precision
  double tf32_flops = 0;  // GPU only: the same GEMM with TF32 tensor cores
  std::string how;        // what was timed, for the report
  bool measured() const { return bytes_per_s > 0; }
};

Ceilings& cpu_ceilings();
Ceilings& gpu_ceilings();

// All threads: a parallel copy of two 256 MiB buffers and a 2048³ matmul through the
// executor (the engine's own GEMM path).
void measure_cpu_ceilings();

// Why GPU benchmarks cannot run here ("" when a GPU is usable).
std::string gpu_unavailable();
// The training-step benchmarks (bench/step.cpp), for every backend in this build; called
// from main, once every backend has registered itself.
void register_step_benchmarks();
// --profile_step=<backend>/<preset>/<batch>/<agilenn|plain>: runs that training step with
// the executor's per-op timing on and prints where the time goes, largest first.
int profile_step(const std::string& spec, std::ostream& out);
// --profile_step_shapes=<same>: the same, each op's time split by its inputs' shapes.
int profile_step_shapes(const std::string& spec, std::ostream& out);
// --dist_report=<backend>/<preset>/<batch>/<agilenn|plain>, under mpirun with N ≥ 2 ranks:
// gradient bytes reduced per step, the share of the all-reduce hidden behind the backward,
// and from those the efficiency predicted at 8 and 64 GPUs, with its assumptions.
int dist_report(const std::string& spec, std::ostream& out);
// Measures gpu_ceilings(): set by the GPU benchmarks (cuda_kernels.cpp, CUDA builds) when
// they register; empty otherwise.
std::function<void()>& gpu_ceilings_probe();

// The work one run must do at the least: every input read once, every output written
// once, and the arithmetic of the op itself. A baseline is charged the same work as the
// kernel it stands in for, so its rates are effective rates and the times compare directly.
struct Work {
  double bytes = 0;
  double flops = 0;
};

// MB and MFLOP per run, GB/s and GFLOP/s achieved in `seconds_per_run` (the time the
// benchmark reports: wall time on the CPU, the events' median on the GPU), and %BW /
// %FLOP of `ceilings`. Plain counters, not Google Benchmark rates, which would divide by
// the main thread's CPU time unless a benchmark uses real time.
void set_rate_counters(benchmark::State& state, const Work& work, const Ceilings& ceilings, double seconds_per_run);

// Wall-clock seconds per iteration of a benchmark loop: start() just before it, then
// seconds_per_iteration(state) just after.
class LoopTimer {
 public:
  void start();
  double seconds_per_iteration(const benchmark::State& state) const;

 private:
  double start_ = 0;
};

// Uniform in [lo, hi), from a fixed seed: never zeros, never the same tensor for two seeds.
Tensor random_tensor(const Shape& shape, uint64_t seed, float lo = -1.0f, float hi = 1.0f);

// Runs body(); an exception skips the benchmark with its message instead of aborting.
template <class F>
void guarded(benchmark::State& state, F&& body) {
  try {
    body();
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

}  // namespace agilenn::bench
