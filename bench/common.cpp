#include "bench/common.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <sstream>
#include <vector>

#include "engine/ir/ops.h"
#include "engine/runtime/backend_registry.h"
#include "engine/runtime/executor.h"
#include "engine/runtime/threads.h"


namespace agilenn::bench {

Ceilings& cpu_ceilings() {
  static Ceilings c;
  return c;
}

Ceilings& gpu_ceilings() {
  static Ceilings c;
  return c;
}

Tensor random_tensor(const Shape& shape, uint64_t seed, float lo, float hi) {
  Tensor t = Tensor::zeros(shape, DType::f32);
  float* p = t.data<float>();
  uint64_t state = 0x9e3779b97f4a7c15ULL ^ (seed * 0xbf58476d1ce4e5b9ULL);
  const double span = static_cast<double>(hi) - static_cast<double>(lo);
  for (int64_t i = 0; i < t.numel(); ++i) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    const double u = static_cast<double>(state >> 11) * 0x1.0p-53;
    p[i] = static_cast<float>(static_cast<double>(lo) + u * span);
  }
  return t;
}

void set_rate_counters(benchmark::State& state, const Work& work, const Ceilings& ceilings, double seconds_per_run) {
  state.counters["MB"] = work.bytes * 1e-6;
  if (!(seconds_per_run > 0)) return;
  const double bytes_per_s = work.bytes / seconds_per_run, flops = work.flops / seconds_per_run;
  state.counters["GB/s"] = bytes_per_s * 1e-9;
  if (ceilings.bytes_per_s > 0) state.counters["%BW"] = bytes_per_s / ceilings.bytes_per_s * 100.0;
  if (work.flops <= 0) return;
  state.counters["MFLOP"] = work.flops * 1e-6;
  state.counters["GFLOP/s"] = flops * 1e-9;
  if (ceilings.flops > 0) state.counters["%FLOP"] = flops / ceilings.flops * 100.0;
}

namespace {
double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

void LoopTimer::start() { start_ = now_seconds(); }

double LoopTimer::seconds_per_iteration(const benchmark::State& state) const {
  const auto n = state.iterations();
  return n > 0 ? (now_seconds() - start_) / static_cast<double>(n) : 0.0;
}

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Bytes read + written per second by a copy split into one piece per engine thread
// (engine/runtime/threads.h), as the CPU kernels split their loops.
double cpu_copy_bandwidth(size_t bytes, int repeats) {
  const size_t n = bytes / sizeof(float);
  std::unique_ptr<float[]> src(new float[n]), dst(new float[n]);
  auto copy = [&](bool first_touch) {
    threads::parallel_for(static_cast<int64_t>(n), threads::count(), [&](int64_t b, int64_t e) {
      const auto begin = static_cast<size_t>(b), end = static_cast<size_t>(e);
      if (first_touch) {
        for (size_t i = begin; i < end; ++i) src[i] = static_cast<float>(i % 1021) + 1.0f;
        std::memset(dst.get() + begin, 1, (end - begin) * sizeof(float));
      }
      std::memcpy(dst.get() + begin, src.get() + begin, (end - begin) * sizeof(float));
    });
  };
  copy(true);
  double best = 0;
  for (int r = 0; r < repeats; ++r) {
    const auto start = std::chrono::steady_clock::now();
    copy(false);
    best = std::max(best, 2.0 * static_cast<double>(n * sizeof(float)) / seconds_since(start));
  }
  benchmark::DoNotOptimize(dst[n / 2]);
  return best;
}

// FLOP/s of an n×n by n×n float32 matmul op run by the executor on the CPU backend.
double cpu_gemm_flops(int64_t n, int repeats) {
  Graph g;
  Value a = ops::leaf(g, "a", {n, n}, DType::f32), b = ops::leaf(g, "b", {n, n}, DType::f32);
  Value c = ops::matmul(a, b);
  Executor ex(g, compile(g, {c.id()}), cpu_backend());
  const Feeds feeds{{"a", random_tensor({n, n}, 1)}, {"b", random_tensor({n, n}, 2)}};
  benchmark::DoNotOptimize(ex.run(feeds));  // warm-up: threads, pages
  double best = 0;
  const double flops = 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n);
  for (int r = 0; r < repeats; ++r) {
    const auto start = std::chrono::steady_clock::now();
    benchmark::DoNotOptimize(ex.run(feeds));
    best = std::max(best, flops / seconds_since(start));
  }
  return best;
}

}  // namespace

void measure_cpu_ceilings() {
  Ceilings& c = cpu_ceilings();
  c.bytes_per_s = cpu_copy_bandwidth(size_t{256} << 20, 8);
  c.flops = cpu_gemm_flops(2048, 4);
  std::ostringstream how;
  how << threads::count() << " threads: memcpy of 256 MiB (read + write counted), matmul op 2048^3 f32; best of runs";
  c.how = how.str();
}

std::function<void()>& gpu_ceilings_probe() {
  static std::function<void()> probe;
  return probe;
}

std::string gpu_unavailable() {
  const std::string why = backend_unavailable("cuda");
  return why.empty() ? why : "no GPU: " + why;
}

}  // namespace agilenn::bench
