// Whole training steps on a backend (cpu, and cuda when built with CUDA): the
// second-order AgileNN step, the same model's plain first-order step, their ratio (the
// cost of explainability-driven training), and the growth of step time with the number
// of IG points m and with the batch size (fitted slopes: `_BigO`, `_RMS`).
//   BM_Step/<backend>/<preset>/<batch>/<agilenn|plain>
//   BM_ExplainabilityCost/<backend>/<preset>/<batch>
//   BM_IgPoints/<backend>/<preset>/<batch>/<m>
//   BM_StepBatch/<backend>/<preset>/<agilenn|plain>/<batch>
//   BM_StepUnderLoad/cpu/<preset>/<batch>/<agilenn|plain>
// BM_StepUnderLoad times the CPU step alone and then beside a busy neighbour (a child
// process spinning on one of the CPUs this process may use, bench/busy_neighbour.h), in
// alternating rounds; its time is the loaded step's, and its counters solo_ms, loaded_ms
// (medians over rounds; solo_max_ms, loaded_max_ms: the slowest round), ratio (images/s
// loaded / solo: DESIGN §8 wants >= 0.35 on two cores), busy_share (the fraction of its
// CPU the neighbour got), load_avg (1-minute load average at the start, the neighbour
// not counted) and threads (the engine's CPU threads).
// Counters: images/s; memory: arena_MiB (the executor's planned arena; arena_no_inplace_MiB
// the same plan without in-place reuse), params_MiB
// (parameters, state and optimizer slots), peak_MiB (arena + params + the step's outputs:
// loss, gradients, state updates); on the GPU also gpu_held_MiB (the caching allocator's
// bytes after the steps) and gpu_used_MiB (device memory taken since the trainer was made).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <iomanip>
#include <map>
#include <ostream>

#include "bench/busy_neighbour.h"
#include "bench/common.h"
#include "engine/core/error.h"
#include "engine/data/synthetic.h"
#include "engine/dist/communicator.h"
#include "engine/runtime/backend_registry.h"
#include "engine/runtime/threads.h"
#include "engine/train/trainer.h"


namespace agilenn::bench {
namespace {

constexpr int64_t kClasses = 10;

enum class On { cpu, cuda };
const char* on_name(On on) { return on == On::cpu ? "cpu" : "cuda"; }

Backend& backend_for(On on) { return open_backend(on_name(on)); }

// Skips (and returns true) when the backend cannot run here.
bool unavailable(benchmark::State& state, On on) {
  if (on == On::cpu) return false;
  const std::string why = gpu_unavailable();
  if (why.empty()) return false;
  state.SkipWithError(why.c_str());
  return true;
}

// Compiled as agilenn-train compiles it; `remat`: its values recomputed as far as that
// lowers its memory peak (--memory-budget-mb 0).
std::unique_ptr<train::Trainer> make_trainer(On on, const std::string& preset, int64_t batch, bool attribution,
                                             int ig_steps, bool remat = false) {
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
                                            std::make_unique<train::SGDW>(train::CosineSchedule{0.01, 1000, 0}),
                                            backend_for(on),
                                            train::step_compile_options(backend_for(on), remat ? std::optional<size_t>(0)
                                                                                         : std::nullopt));
  if (!table_name.empty()) t->set_input(table_name, train::compute_zero_point_table(opt.preset, kClasses, values, DType::f32, cpu_backend()));
  // As agilenn-train runs it: on the GPU, each step replayed as a recorded CUDA graph.
  t->executor().set_graph_replay(on == On::cuda);
  return t;
}

// A synthetic batch, already on the backend's device (the step times exclude uploads).
data::Batch make_batch(On on, const std::string& preset, int64_t batch) {
  const models::AgileNNPreset& p = models::preset(preset);
  data::Batch b = data::SyntheticDataset(kClasses, p.input_size, p.input_size, 3, batch, 3).batch(0, batch);
  if (on != On::cpu) {
    Backend& be = backend_for(on);
    b.images = be.to_device(b.images);
    b.labels = be.to_device(b.labels);
  }
  return b;
}

// Three steps before any timing: the first touches the arena and settles library
// algorithms, the next two record the step for graph replay (one recording for each of
// the trainer's two input buffers).
void warm_up(train::Trainer& t, const data::Batch& b) {
  for (int i = 0; i < 3; ++i) t.step(b.images, b.labels);
}

// Steps launched back to back, as agilenn-train runs them (results read back once, at the end).
void run_steps(train::Trainer& t, const data::Batch& b, int64_t n) {
  for (int64_t i = 0; i < n; ++i) t.enqueue(b.images, b.labels);
  t.collect();
}

double seconds_per_step(train::Trainer& t, const data::Batch& b, int repeats) {
  warm_up(t, b);
  const auto start = std::chrono::steady_clock::now();
  run_steps(t, b, repeats);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / repeats;
}

// Device memory in use, after returning the caching allocator's idle blocks, so each
// benchmark's device memory figures count its own trainer only.
double start_memory(On on) {
  Backend& b = backend_for(on);
  b.release_cached();
  return static_cast<double>(b.memory_use().device_used_bytes);
}

void report(benchmark::State& state, train::Trainer& t, int64_t batch, On on, double used_before,
            double seconds_per_step) {
  constexpr double kMiB = 1 << 20;
  if (seconds_per_step > 0) state.counters["images/s"] = static_cast<double>(batch) / seconds_per_step;
  double params = 0, outputs = 0;
  for (const auto& [name, v] : t.values()) params += static_cast<double>(v.nbytes());
  for (const auto& [name, v] : t.optimizer().slots()) params += static_cast<double>(v.nbytes());
  const Graph& g = t.graph().graph;
  for (NodeId o : t.plan().outputs) outputs += static_cast<double>(numel(g.node(o).shape) * dtype_size(g.node(o).dtype));
  const double arena = static_cast<double>(t.plan().memory.arena_bytes);
  state.counters["arena_MiB"] = arena / kMiB;
  // The same plan without in-place reuse, for the memory it saves.
  const Plan& p = t.plan();
  state.counters["arena_no_inplace_MiB"] =
      static_cast<double>(plan_memory(g, p.order, p.reads, p.outputs, false).arena_bytes) / kMiB;
  state.counters["live_peak_MiB"] = static_cast<double>(p.memory.live_peak_bytes) / kMiB;
  // Kernel launches a step makes (one per computed node; a library call may launch more).
  state.counters["nodes_per_step"] = static_cast<double>(
      std::count_if(p.order.begin(), p.order.end(), [&](NodeId id) { return g.node(id).op_name() != "leaf"; }));
  if (p.recomputed > 0) {
    state.counters["live_peak_keep_all_MiB"] = static_cast<double>(p.live_peak_without_remat) / kMiB;
    state.counters["recomputed_nodes"] = static_cast<double>(p.recomputed);
  }
  state.counters["params_MiB"] = params / kMiB;
  state.counters["peak_MiB"] = (arena + params + outputs) / kMiB;
  if (on == On::cuda) {
    const Backend::MemoryUse use = backend_for(on).memory_use();
    state.counters["gpu_held_MiB"] = static_cast<double>(use.held_bytes) / kMiB;
    state.counters["gpu_used_MiB"] = (static_cast<double>(use.device_used_bytes) - used_before) / kMiB;
  }
}

void step_benchmark(benchmark::State& state, On on, const std::string& preset, int64_t batch, bool attribution,
                    bool remat) {
  if (unavailable(state, on)) return;
  guarded(state, [&] {
    const double before = start_memory(on);
    auto t = make_trainer(on, preset, batch, attribution, 2, remat);
    const data::Batch b = make_batch(on, preset, batch);
    warm_up(*t, b);
    LoopTimer timer;
    timer.start();
    for (auto _ : state) t->enqueue(b.images, b.labels);
    t->collect();
    report(state, *t, batch, on, before, timer.seconds_per_iteration(state));
    state.SetLabel(preset + (attribution ? " second-order AgileNN" : " plain first-order") +
                   (remat ? ", recomputing" : ""));
  });
}

// The ratio of the two steps on one batch, timed back to back.
void explainability_cost(benchmark::State& state, On on, const std::string& preset, int64_t batch) {
  if (unavailable(state, on)) return;
  guarded(state, [&] {
    auto full = make_trainer(on, preset, batch, true, 2), plain = make_trainer(on, preset, batch, false, 2);
    const data::Batch b = make_batch(on, preset, batch);
    double ratio = 0, full_s = 0, plain_s = 0;
    for (auto _ : state) {
      full_s = seconds_per_step(*full, b, 3);
      plain_s = seconds_per_step(*plain, b, 3);
      ratio = full_s / plain_s;
    }
    state.counters["full/plain"] = ratio;
    state.counters["full_ms"] = full_s * 1e3;
    state.counters["plain_ms"] = plain_s * 1e3;
    state.SetLabel(preset + " (PyTorch 1.13 on 2 CPU cores, paper batch 8: 10.7x)");
  });
}

// Step time against the number of IG points m (the benchmark's argument).
void ig_points(benchmark::State& state, On on, const std::string& preset, int64_t batch) {
  if (unavailable(state, on)) return;
  guarded(state, [&] {
    const int m = static_cast<int>(state.range(0));
    const double before = start_memory(on);
    auto t = make_trainer(on, preset, batch, true, m);
    const data::Batch b = make_batch(on, preset, batch);
    warm_up(*t, b);
    LoopTimer timer;
    timer.start();
    for (auto _ : state) t->enqueue(b.images, b.labels);
    t->collect();
    state.SetComplexityN(m);
    report(state, *t, batch, on, before, timer.seconds_per_iteration(state));
  });
}

// Step time against the batch size (the benchmark's argument).
void batch_growth(benchmark::State& state, On on, const std::string& preset, bool attribution) {
  if (unavailable(state, on)) return;
  guarded(state, [&] {
    const int64_t batch = state.range(0);
    const double before = start_memory(on);
    auto t = make_trainer(on, preset, batch, attribution, 2);
    const data::Batch b = make_batch(on, preset, batch);
    warm_up(*t, b);
    LoopTimer timer;
    timer.start();
    for (auto _ : state) t->enqueue(b.images, b.labels);
    t->collect();
    state.SetComplexityN(batch);
    report(state, *t, batch, on, before, timer.seconds_per_iteration(state));
  });
}

// The step alone, then beside a busy neighbour on the last CPU this process may use,
// `rounds` times, `steps` timed steps each (after one untimed step, which also lets the
// scheduler place the threads); the medians over rounds are reported.
void step_under_load(benchmark::State& state, const std::string& preset, int64_t batch, bool attribution, int steps,
                     int rounds) {
  guarded(state, [&] {
    const std::vector<int> cpus = allowed_cpus();
    if (cpus.size() < 2) {
      state.SkipWithError("needs two CPUs: this process may use one");
      return;
    }
    const double load = load_average_1min();
    auto t = make_trainer(On::cpu, preset, batch, attribution, 2);
    const data::Batch b = make_batch(On::cpu, preset, batch);
    t->step(b.images, b.labels);
    std::vector<double> solo, loaded;
    double share = 0;
    const auto median = [](std::vector<double> v) {
      std::sort(v.begin(), v.end());
      const size_t n = v.size();
      return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
    };
    for (auto _ : state) {
      for (int r = 0; r < rounds; ++r) {
        solo.push_back(seconds_per_step(*t, b, steps));
        // Long enough for a step 50 times slower than alone; the child ends itself then.
        const double limit = std::clamp(50.0 * (steps + 1) * solo.back(), 20.0, 900.0);
        BusyNeighbour neighbour(cpus.back(), limit);
        loaded.push_back(seconds_per_step(*t, b, steps));
        const bool still = neighbour.spinning();
        share += neighbour.stop();
        AGILENN_CHECK(still, "the busy neighbour reached its time limit (" << limit << " s) during the loaded steps");
      }
      state.SetIterationTime(median(loaded));
    }
    const double solo_s = median(solo), loaded_s = median(loaded);
    state.counters["solo_ms"] = solo_s * 1e3;
    state.counters["loaded_ms"] = loaded_s * 1e3;
    state.counters["solo_max_ms"] = *std::max_element(solo.begin(), solo.end()) * 1e3;
    state.counters["loaded_max_ms"] = *std::max_element(loaded.begin(), loaded.end()) * 1e3;
    state.counters["ratio"] = solo_s / loaded_s;
    state.counters["images/s"] = static_cast<double>(batch) / loaded_s;
    state.counters["solo_images/s"] = static_cast<double>(batch) / solo_s;
    state.counters["busy_share"] = share / rounds;
    state.counters["load_avg"] = load;
    state.counters["threads"] = threads::count();
    state.SetLabel(preset + (attribution ? " second-order AgileNN" : " plain first-order") +
                   ", busy neighbour on CPU " + std::to_string(cpus.back()));
  });
}

struct StepCase {
  std::string preset;
  int64_t batch;
};

void register_steps(On on) {
  const std::string dev = on_name(on);
  const bool gpu = on == On::cuda;
  // The step batches: the CPU's as before; on the GPU the DESIGN §8 target's batch 64.
  std::vector<StepCase> steps{{"tiny", 32}, {"tiny", 64}, {"paper", 8}};
  if (gpu) steps.push_back({"paper", 64});
  for (const StepCase& c : steps)
    for (bool attribution : {true, false})
      for (bool remat : {false, true}) {
        const std::string name = "BM_Step/" + dev + "/" + c.preset + "/" + std::to_string(c.batch) + "/" +
                                 (attribution ? "agilenn" : "plain") + (remat ? "-remat" : "");
        benchmark::RegisterBenchmark(name.c_str(), [on, c, attribution, remat](benchmark::State& s) {
          step_benchmark(s, on, c.preset, c.batch, attribution, remat);
        })->UseRealTime()->MinTime(1.0)->Unit(benchmark::kMillisecond);
      }
  const std::vector<StepCase> ratios{{"tiny", 32}, {"paper", gpu ? 64 : 8}};
  for (const StepCase& c : ratios) {
    const std::string name = "BM_ExplainabilityCost/" + dev + "/" + c.preset + "/" + std::to_string(c.batch);
    benchmark::RegisterBenchmark(name.c_str(), [on, c](benchmark::State& s) {
      explainability_cost(s, on, c.preset, c.batch);
    })->Iterations(1)->UseRealTime()->Unit(benchmark::kMillisecond);
  }
  std::vector<StepCase> ig{{"tiny", 16}};
  if (gpu) ig.push_back({"paper", 8});
  for (const StepCase& c : ig) {
    const std::string name = "BM_IgPoints/" + dev + "/" + c.preset + "/" + std::to_string(c.batch);
    benchmark::RegisterBenchmark(name.c_str(), [on, c](benchmark::State& s) { ig_points(s, on, c.preset, c.batch); })
        ->Arg(2)->Arg(4)->Arg(8)->Arg(16)->Arg(32)
        ->Complexity(benchmark::oN)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  }
  struct Growth {
    std::string preset;
    std::vector<int64_t> batches;
  };
  std::vector<Growth> growth;
  if (gpu) {
    growth.push_back({"tiny", {16, 32, 64, 128}});
    growth.push_back({"paper", {8, 16, 32, 64}});
  } else {
    growth.push_back({"tiny", {8, 16, 32, 64}});
  }
  for (const Growth& gr : growth)
    for (bool attribution : {true, false}) {
      const std::string name = "BM_StepBatch/" + dev + "/" + gr.preset + "/" + (attribution ? "agilenn" : "plain");
      auto* b = benchmark::RegisterBenchmark(name.c_str(), [on, preset = gr.preset, attribution](benchmark::State& s) {
        batch_growth(s, on, preset, attribution);
      });
      for (int64_t batch : gr.batches) b->Arg(batch);
      b->Complexity(benchmark::oN)->UseRealTime()->Unit(benchmark::kMillisecond);
    }
}

// The DESIGN §8 contention target: tiny at batch 32, paper at batch 8 (slow on a CPU:
// few steps).
void register_under_load() {
  struct LoadCase {
    std::string preset;
    int64_t batch;
    int steps, rounds;
  };
  for (const LoadCase& c : {LoadCase{"tiny", 32, 15, 3}, LoadCase{"paper", 8, 2, 2}})
    for (bool attribution : {true, false}) {
      const std::string name = "BM_StepUnderLoad/cpu/" + c.preset + "/" + std::to_string(c.batch) + "/" +
                               (attribution ? "agilenn" : "plain");
      benchmark::RegisterBenchmark(name.c_str(), [c, attribution](benchmark::State& s) {
        step_under_load(s, c.preset, c.batch, attribution, c.steps, c.rounds);
      })->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);
    }
}

// A step named as in the BM_Step names: <backend>/<preset>/<batch>/<agilenn|plain>.
struct StepSpec {
  On on;
  std::string preset;
  int64_t batch;
  bool attribution;
  bool remat;
};

StepSpec parse_step_spec(const std::string& flag, const std::string& spec) {
  std::vector<std::string> part;
  for (size_t at = 0;;) {
    const size_t slash = spec.find('/', at);
    part.push_back(spec.substr(at, slash - at));
    if (slash == std::string::npos) break;
    at = slash + 1;
  }
  const std::string suffix = "-remat";
  std::string mode = part.size() == 4 ? part[3] : "";
  const bool remat = mode.size() > suffix.size() && mode.ends_with(suffix);
  if (remat) mode.resize(mode.size() - suffix.size());
  AGILENN_CHECK(part.size() == 4 && (part[0] == "cpu" || part[0] == "cuda") &&
                    (mode == "agilenn" || mode == "plain") && !part[2].empty() &&
                    part[2].find_first_not_of("0123456789") == std::string::npos,
                flag << "=" << spec
                     << ": expected <cpu|cuda>/<preset>/<batch>/<agilenn|plain>[-remat], e.g. cpu/tiny/64/agilenn");
  const On on = part[0] == "cpu" ? On::cpu : On::cuda;
  if (on == On::cuda) {
    const std::string why = gpu_unavailable();
    AGILENN_CHECK(why.empty(), flag << "=" << spec << ": " << why);
  }
  return {on, part[1], std::stoll(part[2]), mode == "agilenn", remat};
}

// Where the step's memory peaks: the step of the plan with the most bytes live, and what
// is live there, by op (what a rematerialisation or fusion pass would have to shrink).
void report_memory_peak(const Graph& g, const Plan& plan, std::ostream& out) {
  const MemoryPlan& m = plan.memory;
  const size_t peak = m.live_peak_step;
  // An in-place output holds its input's bytes from the step after the hand-over.
  auto from = [](const Buffer& b) { return b.reuses == kNoNode ? b.first : b.first + 1; };
  std::map<std::string, std::pair<size_t, int>> by_op;
  for (const Buffer& b : m.buffers)
    if (from(b) <= peak && peak <= b.last) {
      auto& [bytes, count] = by_op[g.node(b.node).op_name()];
      bytes += b.bytes, count += 1;
    }
  std::vector<std::pair<std::string, std::pair<size_t, int>>> sorted(by_op.begin(), by_op.end());
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.second.first > b.second.first; });
  constexpr double kMiB = 1 << 20;
  out << "memory: arena " << static_cast<double>(m.arena_bytes) / kMiB << " MiB, live peak "
      << static_cast<double>(m.live_peak_bytes) / kMiB << " MiB at step " << peak << " of " << plan.order.size()
      << ", " << m.in_place << " outputs in place; live there, by the op that made it:\n";
  for (const auto& [op, bc] : sorted)
    out << std::left << std::setw(28) << op << std::right << std::setw(10) << static_cast<double>(bc.first) / kMiB
        << " MiB" << std::setw(8) << bc.second << " values\n";
}

// The bytes the step's kernels read (each input once per kernel) and write: on a CPU most
// of the step is memory-bound, so this deterministic count tracks what a plan change saves
// where wall times on a shared machine vary by more than the change.
void report_traffic(const Graph& g, const Plan& plan, std::ostream& out) {
  double read = 0, written = 0;
  for (size_t s = 0; s < plan.order.size(); ++s) {
    const Node& n = g.node(plan.order[s]);
    if (n.op_name() == "leaf") continue;
    std::vector<NodeId> inputs = plan.reads[s];
    std::sort(inputs.begin(), inputs.end());
    inputs.erase(std::unique(inputs.begin(), inputs.end()), inputs.end());
    for (NodeId in : inputs) read += static_cast<double>(arena_bytes(g.node(in)));
    written += static_cast<double>(arena_bytes(n));
  }
  constexpr double kMiB = 1 << 20;
  out << "traffic: " << read / kMiB << " MiB read, " << written / kMiB << " MiB written per step by "
      << plan.order.size() << " steps\n";
}

int profile(const std::string& flag, const std::string& spec, Executor::Profiling how, std::ostream& out) {
  const StepSpec sp = parse_step_spec(flag, spec);
  auto t = make_trainer(sp.on, sp.preset, sp.batch, sp.attribution, 2, sp.remat);
  const data::Batch b = make_batch(sp.on, sp.preset, sp.batch);
  warm_up(*t, b);
  constexpr int kSteps = 20;
  t->executor().set_profiling(how);
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < kSteps; ++i) t->step(b.images, b.labels);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / kSteps;
  const std::vector<Executor::OpTime> ops = t->executor().profile();
  double total = 0;
  for (const Executor::OpTime& o : ops) total += o.seconds;
  out << "step " << spec << ", " << threads::describe() << ": " << std::fixed << std::setprecision(2) << wall * 1e3
      << " ms per step (" << kSteps << " steps, each kernel synchronised), "
      << total / kSteps * 1e3 << " ms in kernels\n";
  // The op last: keyed by shapes it is long.
  out << std::setw(10) << "ms/step" << std::setw(8) << "share" << std::setw(12) << "calls/step" << std::setw(12)
      << "us/call" << "  op\n";
  for (const Executor::OpTime& o : ops)
    out << std::setw(10) << o.seconds / kSteps * 1e3 << std::setw(7) << std::setprecision(1)
        << 100 * o.seconds / total << "%" << std::setw(12) << std::setprecision(0)
        << static_cast<double>(o.calls) / kSteps << std::setw(12) << std::setprecision(1)
        << o.seconds / static_cast<double>(o.calls) * 1e6 << std::setprecision(2) << "  " << o.op << "\n";
  report_memory_peak(t->graph().graph, t->plan(), out);
  report_traffic(t->graph().graph, t->plan(), out);
  return 0;
}

}  // namespace

int profile_step(const std::string& spec, std::ostream& out) {
  return profile("--profile_step", spec, Executor::Profiling::by_op, out);
}

int profile_step_shapes(const std::string& spec, std::ostream& out) {
  return profile("--profile_step_shapes", spec, Executor::Profiling::by_op_and_shapes, out);
}

namespace {

// The predictions' assumptions (DESIGN.md §5's target: ≥ 90% at 8 GPUs). The compute time
// is the paper/64 second-order step measured alone on an H200 (bench/results/
// gpu-h200-2026-11-29-096f4b0.md, 139 ms); all-reduce bus bandwidths as NCCL reports them
// (time = 2(N−1)/N · bytes / bus bandwidth): 300 GB/s over NVLink within a node (H200
// NVLink 4, 450 GB/s a direction; a third off for what NCCL reaches), 45 GB/s between nodes
// (one 400 Gb/s InfiniBand port per GPU, 90% of its 50 GB/s); 30 µs a bucket of latency
// within a node, 60 µs between nodes.
struct Cluster {
  const char* name;
  int gpus;
  double bus_bytes_per_second, latency_per_bucket;
};
constexpr double kH200PaperStepSeconds = 0.139;
constexpr Cluster kClusters[] = {{"8 GPUs, one node (NVLink)", 8, 300e9, 30e-6},
                                 {"64 GPUs, 8 nodes (400 Gb/s InfiniBand)", 64, 45e9, 60e-6}};


// One bucket size's measurements, means over the timed steps.
struct Overlap {
  size_t bucket_bytes, buckets;
  double step_seconds = 0;     // the step, as the slowest rank saw it
  double exposed_seconds = 0;  // from the last rank's end of backward to its sums' end
  double reduce_seconds = 0;   // every bucket's sum alone, nothing to hide behind
  double hidden() const {
    return reduce_seconds > 0 ? std::clamp(1.0 - exposed_seconds / reduce_seconds, 0.0, 1.0) : 1.0;
  }
};

// Per rank, its values in its own slots of a vector summed over the ranks: every rank's.
std::vector<double> from_every_rank(const std::vector<double>& mine) {
  const int ranks = dist::world().size(), rank = dist::world().rank();
  std::vector<double> all(mine.size() * static_cast<size_t>(ranks), 0.0);
  std::copy(mine.begin(), mine.end(), all.begin() + static_cast<long>(mine.size()) * rank);
  dist::world().all_reduce_sum(all.data(), static_cast<int64_t>(all.size()), DType::f64);
  return all;
}

Overlap measure_overlap(train::Trainer& t, const data::Batch& b, size_t bucket_bytes) {
  t.set_gradient_bucket_bytes(bucket_bytes);
  train::GradientBuckets& buckets = *t.gradient_buckets();
  t.step(b.images, b.labels);
  constexpr int kSteps = 3, kReductions = 20;
  using Clock = std::chrono::steady_clock;
  Overlap o{bucket_bytes, buckets.buckets()};
  for (int i = 0; i < kSteps; ++i) {
    dist::world().barrier();
    const auto start = Clock::now();
    t.step(b.images, b.labels);
    const auto [wait_start, wait_end] = buckets.last_wait();
    auto since = [&](Clock::time_point p) { return std::chrono::duration<double>(p - start).count(); };
    // Every process of this machine reads one steady clock: the ranks' times compare.
    const std::vector<double> all = from_every_rank({since(wait_start), since(wait_end), since(Clock::now())});
    double last_backward = 0, last_sum = 0, last_step = 0;
    for (size_t r = 0; r < all.size(); r += 3)
      last_backward = std::max(last_backward, all[r]), last_sum = std::max(last_sum, all[r + 1]),
      last_step = std::max(last_step, all[r + 2]);
    o.exposed_seconds += std::max(0.0, last_sum - last_backward) / kSteps;
    o.step_seconds += last_step / kSteps;
  }
  for (int i = 0; i < kReductions; ++i) {
    dist::world().barrier();
    const auto start = Clock::now();
    buckets.reduce_all_now();
    const std::vector<double> all = from_every_rank({std::chrono::duration<double>(Clock::now() - start).count()});
    o.reduce_seconds += *std::max_element(all.begin(), all.end()) / kReductions;
  }
  return o;
}

}  // namespace

int dist_report(const std::string& spec, std::ostream& out) {
  dist::init();
  const int ranks = dist::world().size();
  AGILENN_CHECK(ranks >= 2, "--dist_report=" << spec << ": run it as several ranks, e.g. mpirun -np 2 agilenn-bench "
                                                 "--dist_report=" << spec);
  AGILENN_CHECK(dist::world().local_rank() == dist::world().rank(),
                "--dist_report: run every rank on one machine (its times compare on one clock)");
  const StepSpec sp = parse_step_spec("--dist_report", spec);
  auto t = make_trainer(sp.on, sp.preset, sp.batch, sp.attribution, 2, sp.remat);
  t->executor().set_graph_replay(false);  // the buckets start from the host while the backward runs
  AGILENN_CHECK(t->gradient_buckets(), "--dist_report: the step has no gradients to reduce");
  const data::Batch b = make_batch(sp.on, sp.preset, sp.batch);
  // The default bucket size, and buckets small enough that the backward can hide them.
  std::vector<Overlap> runs;
  for (size_t bytes : {size_t{25} << 20, size_t{1} << 20}) runs.push_back(measure_overlap(*t, b, bytes));
  if (dist::world().rank() != 0) return 0;
  const size_t gradient_bytes = t->gradient_buckets()->bytes();
  out << std::fixed << std::setprecision(3) << "data parallel, " << spec << ", " << ranks << " " << on_name(sp.on)
      << " ranks (" << dist::world().name() << "), " << threads::describe() << "\n"
      << "  gradient bytes reduced per step: " << gradient_bytes << "\n";
  for (const Overlap& o : runs)
    out << "  buckets of " << (o.bucket_bytes >> 20) << " MiB (" << o.buckets << "): step " << o.step_seconds * 1e3
        << " ms; the sums alone " << o.reduce_seconds * 1e3 << " ms; exposed after the last backward "
        << o.exposed_seconds * 1e3 << " ms; hidden " << std::setprecision(1) << 100 * o.hidden() << "%"
        << std::setprecision(3) << "\n";
  out << "predicted efficiency (compute " << kH200PaperStepSeconds * 1e3
      << " ms a step: the H200's paper/64 second-order step):\n";
  for (const Cluster& c : kClusters)
    for (const Overlap& o : runs) {
      const double n = c.gpus;
      const double reduce = 2 * (n - 1) / n * static_cast<double>(gradient_bytes) / c.bus_bytes_per_second +
                            static_cast<double>(o.buckets) * c.latency_per_bucket;
      const double exposed = reduce * (1 - o.hidden());
      out << "  " << c.name << ", buckets of " << (o.bucket_bytes >> 20) << " MiB: all-reduce " << reduce * 1e3
          << " ms, exposed " << exposed * 1e3 << " ms (the hidden share measured here), efficiency "
          << std::setprecision(1) << 100 * kH200PaperStepSeconds / (kH200PaperStepSeconds + exposed) << "%; with "
          << "nothing hidden " << 100 * kH200PaperStepSeconds / (kH200PaperStepSeconds + reduce) << "%"
          << std::setprecision(3) << "\n";
    }
  return 0;
}

void register_step_benchmarks() {
  register_steps(On::cpu);
  register_under_load();
  const std::vector<std::string> built = backend_names();
  if (std::find(built.begin(), built.end(), "cuda") != built.end()) register_steps(On::cuda);
}

}  // namespace agilenn::bench
