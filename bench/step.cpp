// Whole training steps on the CPU: the second-order AgileNN step, the same model's plain
// first-order step, their ratio (the cost of explainability-driven training), and the
// growth of step time with the number of IG points m.
#include <benchmark/benchmark.h>

#include <chrono>

#include "engine/data/synthetic.h"
#include "engine/train/trainer.h"

namespace agilenn {
namespace {

constexpr int64_t kClasses = 10;

std::unique_ptr<train::Trainer> make_trainer(const std::string& preset, int64_t batch, bool attribution, int ig_steps) {
  train::AgileNNStepOptions opt;
  opt.preset = models::preset(preset);
  opt.classes = kClasses;
  opt.batch = batch;
  opt.attribution = attribution;
  opt.ig.steps = ig_steps;
  auto step = train::build_agilenn_step(opt);
  nn::TensorMap values = step->params.initialise(1, DType::f32);
  const std::string table_name = step->zero_point_table;
  auto t = std::make_unique<train::Trainer>(std::move(step), values,
                                            std::make_unique<train::SGDW>(train::CosineSchedule{0.01, 1000, 0}));
  if (!table_name.empty()) t->set_input(table_name, train::compute_zero_point_table(opt.preset, kClasses, values));
  return t;
}

double seconds_per_step(train::Trainer& t, const data::Batch& b, int repeats) {
  t.step(b.images, b.labels);  // warm-up: first-touch of the arena
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < repeats; ++i) t.step(b.images, b.labels);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / repeats;
}

void report(benchmark::State& state, train::Trainer& t, int64_t batch) {
  state.counters["images/s"] = benchmark::Counter(static_cast<double>(batch), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["arena_MiB"] = static_cast<double>(t.plan().memory.arena_bytes) / (1 << 20);
}

// Args: preset (0 tiny, 1 paper), batch, attribution (1: the second-order AgileNN step,
// 0: the same model's plain first-order step).
void BM_Step(benchmark::State& state) {
  const std::string preset = state.range(0) == 0 ? "tiny" : "paper";
  const int64_t batch = state.range(1);
  const bool attribution = state.range(2) != 0;
  auto t = make_trainer(preset, batch, attribution, 2);
  const models::AgileNNPreset& p = models::preset(preset);
  const data::Batch b = data::SyntheticDataset(kClasses, p.input_size, p.input_size, 3, batch, 3).batch(0, batch);
  for (auto _ : state) t->step(b.images, b.labels);
  report(state, *t, batch);
  state.SetLabel(preset + (attribution ? " second-order AgileNN" : " plain first-order"));
}

// The ratio of the two steps on one batch, timed back to back.
void BM_ExplainabilityCost(benchmark::State& state) {
  const std::string preset = state.range(0) == 0 ? "tiny" : "paper";
  const int64_t batch = state.range(1);
  auto full = make_trainer(preset, batch, true, 2), plain = make_trainer(preset, batch, false, 2);
  const models::AgileNNPreset& p = models::preset(preset);
  const data::Batch b = data::SyntheticDataset(kClasses, p.input_size, p.input_size, 3, batch, 3).batch(0, batch);
  double ratio = 0;
  for (auto _ : state) ratio = seconds_per_step(*full, b, 3) / seconds_per_step(*plain, b, 3);
  state.counters["full/plain"] = ratio;
  state.SetLabel(preset + " (PyTorch 1.13 reference on 2 CPU cores, paper batch 8: 10.7x)");
}

// Step time against the number of IG points; the fitted slope is printed as BigO.
void BM_IgPoints(benchmark::State& state) {
  const int m = static_cast<int>(state.range(0));
  auto t = make_trainer("tiny", 16, true, m);
  const data::Batch b = data::SyntheticDataset(kClasses, 32, 32, 3, 16, 3).batch(0, 16);
  for (auto _ : state) t->step(b.images, b.labels);
  state.SetComplexityN(m);
  report(state, *t, 16);
}

BENCHMARK(BM_Step)
    ->ArgsProduct({{0}, {32, 64}, {1, 0}})
    ->Args({1, 8, 1})
    ->Args({1, 8, 0})
    ->Unit(benchmark::kMillisecond)
    ->MinTime(1.0);
BENCHMARK(BM_ExplainabilityCost)->Args({0, 32})->Args({1, 8})->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_IgPoints)->Arg(2)->Arg(4)->Arg(8)->Arg(16)->Arg(32)->Complexity(benchmark::oN)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace agilenn
