// agilenn-bench's entry point: Google Benchmark's usual flags (--benchmark_filter,
// --benchmark_format, --benchmark_out, ...), plus
//   1. the device ceilings measured before any benchmark (printed, and written into the
//      JSON context: cpu_copy_GBps, cpu_sgemm_GFLOPps, gpu_*), which every kernel
//      benchmark's %BW and %FLOP counters are fractions of;
//   2. after the run, growth slopes and the DESIGN.md §8 targets beside the figures this
//      run measured, met or not. With --benchmark_format=json or csv on stdout, the
//      ceilings and the summary go to stderr so stdout stays machine-readable.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstring>
#include <iomanip>
#include <iostream>
#include <map>
#include <regex>
#include <sstream>

#include "bench/busy_neighbour.h"
#include "bench/common.h"
#include "engine/dist/communicator.h"
#include "engine/runtime/threads.h"

namespace agilenn::bench {
namespace {

using Run = benchmark::BenchmarkReporter::Run;

// A run's name without the /min_time:, /iterations:, /real_time, ... decorations:
// "BM_Step/cpu/paper/8/agilenn", "BM_IgPoints/cpu/tiny/16_BigO".
std::string key(const Run& r) {
  std::string k = r.run_name.function_name;
  if (!r.run_name.args.empty()) k += "/" + r.run_name.args;
  if (r.run_type == Run::RT_Aggregate) k += "_" + r.aggregate_name;
  return k;
}

// Passes everything to the display reporter the flags chose, keeping every run (by key).
class RecordingReporter final : public benchmark::BenchmarkReporter {
 public:
  explicit RecordingReporter(benchmark::BenchmarkReporter* inner) : inner_(inner) {}
  bool ReportContext(const Context& context) override { return inner_->ReportContext(context); }
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& r : runs) runs_[key(r)] = r;
    inner_->ReportRuns(runs);
  }
  void Finalize() override { inner_->Finalize(); }
  const std::map<std::string, Run>& runs() const { return runs_; }

 private:
  benchmark::BenchmarkReporter* inner_;
  std::map<std::string, Run> runs_;
};

std::string fixed(double v, int digits) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(digits) << v;
  return s.str();
}

void print_ceilings(std::ostream& out) {
  const Ceilings& c = cpu_ceilings();
  out << "Ceilings (kernel counters %BW and %FLOP are fractions of these):\n";
  if (c.measured())
    out << "  cpu: copy " << fixed(c.bytes_per_s * 1e-9, 1) << " GB/s, sgemm " << fixed(c.flops * 1e-9, 1)
        << " GFLOP/s  [" << c.how << "]\n";
  else
    out << "  cpu: " << c.how << "\n";
  out << "  cpu threads: " << threads::describe() << "\n";
  const Ceilings& g = gpu_ceilings();
  if (g.measured())
    out << "  gpu: copy " << fixed(g.bytes_per_s * 1e-9, 0) << " GB/s, sgemm " << fixed(g.flops * 1e-12, 1)
        << " TFLOP/s (tf32 " << fixed(g.tf32_flops * 1e-12, 1) << " TFLOP/s)  [" << g.how << "]\n";
  else
    out << "  gpu: " << g.how << "\n";
  out << std::endl;
}

void add_context() {
  const Ceilings& c = cpu_ceilings();
  if (c.measured()) {
    benchmark::AddCustomContext("cpu_copy_GBps", fixed(c.bytes_per_s * 1e-9, 2));
    benchmark::AddCustomContext("cpu_sgemm_GFLOPps", fixed(c.flops * 1e-9, 2));
  }
  benchmark::AddCustomContext("cpu_ceilings", c.how);
  benchmark::AddCustomContext("cpu_threads", threads::describe());
  const Ceilings& g = gpu_ceilings();
  if (g.measured()) {
    benchmark::AddCustomContext("gpu_copy_GBps", fixed(g.bytes_per_s * 1e-9, 1));
    benchmark::AddCustomContext("gpu_sgemm_GFLOPps", fixed(g.flops * 1e-9, 1));
    benchmark::AddCustomContext("gpu_tf32_GFLOPps", fixed(g.tf32_flops * 1e-9, 1));
  }
  benchmark::AddCustomContext("gpu_ceilings", g.how);
}

// ---- the summary

const Run* find_run(const std::map<std::string, Run>& runs, const std::string& name) {
  auto it = runs.find(name);
  return it == runs.end() ? nullptr : &it->second;
}

double counter(const Run& r, const std::string& key) {
  auto it = r.counters.find(key);
  return it == r.counters.end() ? std::nan("") : it->second.value;
}

double seconds_per_iteration(const Run& r) {
  return r.iterations > 0 ? r.real_accumulated_time / static_cast<double>(r.iterations) : std::nan("");
}

struct Row {
  std::string status, target, measured;
};

// "met" / "NOT met" for a measured run; why not otherwise.
std::string verdict(const Run* r, bool met) {
  if (!r) return "not run";
  if (r->error_occurred) return "skipped";
  return met ? "met" : "NOT met";
}

std::string missing(const Run* r) {
  if (!r) return "not in this run";
  return r->error_occurred ? r->error_message : "";
}

// One run per benchmark: with --benchmark_repetitions, the median aggregate.
std::map<std::string, Run> one_per_benchmark(const std::map<std::string, Run>& all) {
  std::map<std::string, Run> out;
  for (const auto& [name, r] : all) {
    if (r.run_type == Run::RT_Iteration) out.emplace(name, r);  // kept unless a median follows
  }
  for (const auto& [name, r] : all)
    if (r.run_type == Run::RT_Aggregate && r.aggregate_name == "median")
      out[name.substr(0, name.size() - 7)] = r;  // minus "_median"
  return out;
}

void print_summary(const std::map<std::string, Run>& all, std::ostream& out) {
  // Growth: the fitted slopes.
  std::vector<std::string> growth;
  for (const auto& [name, r] : all) {
    if (!r.report_big_o) continue;
    const std::string family = name.substr(0, name.size() - 5);  // minus "_BigO"
    const Run* rms = find_run(all, family + "_RMS");
    const bool ig = family.rfind("BM_IgPoints", 0) == 0;
    std::ostringstream s;
    s << "  " << family << ": " << fixed(r.real_accumulated_time * 1e3, 2) << " ms per "
      << (ig ? "IG point" : "image");
    if (rms) s << " (RMS " << fixed(rms->GetAdjustedRealTime() * 100.0, 0) << "%)";
    growth.push_back(s.str());
  }
  if (!growth.empty()) {
    out << "\nGrowth (least-squares slope of step time, BigO):\n";
    for (const std::string& g : growth) out << g << "\n";
  }

  const std::map<std::string, Run> runs = one_per_benchmark(all);
  std::vector<Row> rows;
  // PyTorch 1.13 on a two-core CPU, paper preset, batch 8, m = 2 (DESIGN.md §8).
  constexpr double kTorchStepS = 1.240, kTorchRatio = 10.7;
  {
    const Run* r = find_run(runs, "BM_ExplainabilityCost/cpu/paper/8");
    const double ratio = r ? counter(*r, "full/plain") : std::nan("");
    rows.push_back({verdict(r, ratio <= kTorchRatio / 2),
                    "CPU, paper, batch 8: second-order / plain step <= " + fixed(kTorchRatio / 2, 2) +
                        "x (half of PyTorch 1.13's 10.7x)",
                    r && !r->error_occurred ? fixed(ratio, 2) + "x" : missing(r)});
  }
  {
    const Run* r = find_run(runs, "BM_Step/cpu/paper/8/agilenn");
    const double need = 1.5 * 8.0 / kTorchStepS, ips = r ? counter(*r, "images/s") : std::nan("");
    rows.push_back({verdict(r, ips >= need),
                    "CPU, paper, batch 8: AgileNN step >= 1.5x PyTorch's images/s (" + fixed(need, 2) +
                        "; PyTorch's 1240 ms/step was measured on another two-core CPU)",
                    r && !r->error_occurred ? fixed(ips, 2) + " images/s, " +
                                                  fixed(seconds_per_iteration(*r) * 1e3, 0) + " ms/step"
                                            : missing(r)});
  }
  {
    const Run* r = find_run(runs, "BM_Step/cpu/tiny/32/agilenn");
    rows.push_back({r && !r->error_occurred ? "needs peer" : verdict(r, false),
                    "CPU, tiny: AgileNN step no slower than PyTorch's (no figure in DESIGN: bench/peers)",
                    r && !r->error_occurred ? fixed(counter(*r, "images/s"), 0) + " images/s at batch 32" : missing(r)});
  }
  // Steady under load: a busy neighbour process spinning on one of the two cores.
  const std::regex under_load("BM_StepUnderLoad/cpu/(.*)");
  const size_t before_load = rows.size();
  for (const auto& [name, r] : runs) {
    std::smatch m;
    if (!std::regex_match(name, m, under_load)) continue;
    const double ratio = counter(r, "ratio");
    rows.push_back({verdict(&r, ratio >= 0.35),
                    "CPU, " + m[1].str() +
                        ": with one other busy process on one of the two cores, a step keeps at least 35% of its "
                        "solo throughput",
                    r.error_occurred ? missing(&r)
                                     : fixed(ratio * 100.0, 0) + "% (solo " + fixed(counter(r, "solo_ms"), 1) +
                                           " ms, loaded " + fixed(counter(r, "loaded_ms"), 1) + " ms; load average " +
                                           fixed(counter(r, "load_avg"), 2) + " before)"});
  }
  if (rows.size() == before_load)
    rows.push_back({"not run",
                    "CPU: with one other busy process on one of the two cores, a step keeps at least 35% of its solo "
                    "throughput",
                    "no BM_StepUnderLoad/cpu/ in this run"});
  // Hand-written kernels at the paper preset's shapes: >= 80% of the copy bandwidth.
  const std::regex kernel_at_paper(
      "BM_(Depthwise|Quantize|QuantizeBackward|AttributionStats|AttributionStatsBackward|SoftmaxCrossEntropy)/(cpu|cuda)/"
      "paper[^/]*/(.*/)?kernel");
  const size_t before_kernels = rows.size();
  for (const auto& [name, r] : runs) {
    if (!std::regex_match(name, kernel_at_paper)) continue;
    const double bw = counter(r, "%BW");
    rows.push_back({verdict(&r, bw >= 80.0), name + ": >= 80% of the device's copy bandwidth",
                    r.error_occurred ? missing(&r) : fixed(bw, 1) + "% (" + fixed(counter(r, "GB/s"), 1) + " GB/s)"});
  }
  if (rows.size() == before_kernels)
    rows.push_back({"not run", "Hand-written memory-bound kernels at the paper shapes: >= 80% of copy bandwidth",
                    "no hand-written kernel at a paper shape in this run"});
  // Depthwise on the GPU: at least 2x cuDNN's grouped path.
  const std::regex depthwise_gpu("BM_Depthwise/cuda/(paper[^/]*)/([a-z]+)/kernel");
  const size_t before_depthwise = rows.size();
  for (const auto& [name, r] : runs) {
    std::smatch m;
    if (!std::regex_match(name, m, depthwise_gpu)) continue;
    const Run* lib = find_run(runs, "BM_Depthwise/cuda/" + m[1].str() + "/" + m[2].str() + "/cudnn_grouped");
    const bool both = !r.error_occurred && lib && !lib->error_occurred;
    const double speedup = both ? seconds_per_iteration(*lib) / seconds_per_iteration(r) : std::nan("");
    rows.push_back({both ? (speedup >= 2.0 ? "met" : "NOT met") : verdict(&r, false),
                    name + ": >= 2x cuDNN's grouped convolution",
                    both ? fixed(speedup, 2) + "x" : (r.error_occurred ? missing(&r) : missing(lib))});
  }
  if (rows.size() == before_depthwise)
    rows.push_back({"not run", "GPU depthwise convolution at the paper shapes: >= 2x cuDNN's grouped path",
                    "no BM_Depthwise/cuda/paper*/ in this run"});
  {
    const Run* r = find_run(runs, "BM_Step/cuda/paper/64/agilenn");
    const bool ok = r && !r->error_occurred;
    rows.push_back({ok ? "needs peer" : verdict(r, false),
                    "GPU (H100), paper, batch 64, m = 2: >= 3x PyTorch eager and 1.5x JAX jit images/s (bench/peers)",
                    ok ? fixed(counter(*r, "images/s"), 0) + " images/s" : missing(r)});
    rows.push_back({ok ? "needs peer" : verdict(r, false), "GPU (H100), same step: peak memory <= half PyTorch's",
                    ok ? fixed(counter(*r, "gpu_used_MiB"), 0) + " MiB device memory taken, " +
                             fixed(counter(*r, "peak_MiB"), 0) + " MiB planned"
                       : missing(r)});
  }
  {
    const Run* r = find_run(runs, "BM_ExplainabilityCost/cuda/paper/64");
    const bool ok = r && !r->error_occurred;
    rows.push_back({ok ? "needs peer" : verdict(r, false),
                    "GPU, paper, batch 64: second-order / plain step <= half of PyTorch's on the same GPU",
                    ok ? fixed(counter(*r, "full/plain"), 2) + "x" : missing(r)});
  }
  rows.push_back({"not measured", "Double backward within 1.3x of twice the gradient's cost", "not split out by agilenn-bench"});
  rows.push_back({"not measured", "Data parallel: >= 90% scaling efficiency from 1 to 8 GPUs", "one device here"});
  rows.push_back({"not measured", "Quality (tiny >= 90% top-1 on Fashion-MNIST, paper >= 74% on CIFAR-100)",
                  "agilenn-train runs, not agilenn-bench"});

  // Rows skipped for one reason (no GPU) are listed once.
  std::map<std::string, std::vector<std::string>> skipped;
  std::vector<Row> shown;
  for (const Row& r : rows) {
    if (r.status != "skipped") {
      shown.push_back(r);
      continue;
    }
    auto& same = skipped[r.measured];
    if (same.empty()) shown.push_back(r);
    same.push_back(r.target);
  }
  out << "\nDESIGN.md section 8 targets against this run:\n";
  for (Row& r : shown) {
    if (r.status == "skipped" && skipped[r.measured].size() > 1)
      r.target = std::to_string(skipped[r.measured].size()) + " rows, from " + r.target;
    out << "  [" << std::left << std::setw(12) << r.status << "] " << r.target << ": " << r.measured << "\n";
  }
  out << std::flush;
}

bool has_flag(int argc, char** argv, const char* flag) {
  const size_t n = std::strlen(flag);
  for (int i = 1; i < argc; ++i)
    if (std::strncmp(argv[i], flag, n) == 0 && std::strcmp(argv[i] + n, "=false") != 0 && std::strcmp(argv[i] + n, "=0") != 0)
      return true;
  return false;
}

// Removes `flag`=SPEC (flag with its '=') from argv; returns SPEC ("" when absent).
std::string take_spec_flag(int& argc, char** argv, const char* kFlag) {
  std::string spec;
  int out = 1;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], kFlag, std::strlen(kFlag)) == 0) spec = argv[i] + std::strlen(kFlag);
    else argv[out++] = argv[i];
  }
  argc = out;
  return spec;
}

// Removes --no_ceilings from argv (Google Benchmark rejects flags it does not know);
// returns whether it was there.
bool take_no_ceilings(int& argc, char** argv) {
  bool found = false;
  int out = 1;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--no_ceilings") == 0) found = true;
    else argv[out++] = argv[i];
  }
  argc = out;
  return found;
}

}  // namespace
}  // namespace agilenn::bench

int main(int argc, char** argv) {
  using namespace agilenn::bench;
  if (is_busy_neighbour_child(argc, argv)) return busy_neighbour_child_main(argc, argv);
  register_step_benchmarks();
  const bool listing = has_flag(argc, argv, "--benchmark_list_tests");
  const bool no_ceilings = take_no_ceilings(argc, argv);
  using SpecRun = int (*)(const std::string&, std::ostream&);
  for (const auto& [flag, run] : {std::pair<const char*, SpecRun>{"--profile_step=", profile_step},
                                  std::pair<const char*, SpecRun>{"--profile_step_shapes=", profile_step_shapes},
                                  std::pair<const char*, SpecRun>{"--dist_report=", dist_report}}) {
    if (const std::string spec = take_spec_flag(argc, argv, flag); !spec.empty()) {
      try {
        const int code = run(spec, std::cout);
        agilenn::dist::finalize();
        return code;
      } catch (const std::exception& e) {
        std::cerr << "agilenn-bench: " << agilenn::dist::rank_prefix() << e.what() << "\n";
        if (agilenn::dist::world().size() > 1) agilenn::dist::world().abort(1);
        return 1;
      }
    }
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;

  benchmark::BenchmarkReporter* display = benchmark::CreateDefaultDisplayReporter();
  std::ostream& out = dynamic_cast<benchmark::ConsoleReporter*>(display) ? std::cout : std::cerr;
  if (!listing) {
    const std::string why = no_ceilings ? "not measured (--no_ceilings)" : gpu_unavailable();
    if (no_ceilings) cpu_ceilings().how = why;
    else measure_cpu_ceilings();
    gpu_ceilings().how = why;
    if (why.empty() && gpu_ceilings_probe()) {
      try {
        gpu_ceilings_probe()();
      } catch (const std::exception& e) {
        gpu_ceilings() = Ceilings{};
        gpu_ceilings().how = std::string("not measured: ") + e.what();
      }
    }
    add_context();
    print_ceilings(out);
  }
  RecordingReporter reporter(display);
  benchmark::RunSpecifiedBenchmarks(&reporter);
  if (!listing) print_summary(reporter.runs(), out);
  benchmark::Shutdown();
  return 0;
}
