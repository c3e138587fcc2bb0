// agilenn-peer-reference: one AgileNN training step, written out for the PyTorch and JAX
// peers of bench/peers/ to reproduce and time.
//
// For a preset, batch, IG rule and seed it builds the second-order AgileNN step (and the
// same model's plain first-order step), initialises every parameter and state tensor,
// draws one deterministic synthetic batch, evaluates both steps once and writes to --out:
//   weights.safetensors   every parameter and state tensor the step is fed, by agilenn name
//   batch.safetensors     images [B,H,W,3] (NHWC), labels [B] int32
//   expected.safetensors  loss, metric/<name>, grad/<param>, state/<name> (BN moving
//                         statistics after the step), ig.zero_point_grads (the per-class
//                         α = 0 table, when the step uses it); plain/... for the plain step
//   config.json           the options, the preset's structure, the quadrature, the
//                         optimizer of agilenn-bench's BM_Step, tensor layouts
// With --time N --kind agilenn|plain it instead reads that case back and times N steps of
// one kind through a Trainer on --device (SGDW update included, as BM_Step), writing
// timing-<kind>.json: per-step milliseconds and the step's memory (planned arena of
// intermediates + the step's outputs; the peers report the same quantity).
#include <CLI/CLI.hpp>

#include <algorithm>
#include <optional>
#include <chrono>
#include <cmath>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>

#include "engine/core/error.h"
#include "engine/data/synthetic.h"
#include "engine/io/checkpoint.h"
#include "engine/runtime/backend_registry.h"
#include "engine/train/trainer.h"


namespace {

using namespace agilenn;
using nlohmann::json;

struct Options {
  std::string preset = "tiny", rule = "trapezoid", dtype = "f32", quantizer = "straight-through", out, device = "cpu";
  int64_t batch = 32, classes = 10;
  int m = 2;
  uint64_t seed = 1, data_seed = 3;
  bool perturb = true, table = true;
  int time_iters = 0, warmup = 3;
  std::string kind = "agilenn";
  std::optional<double> memory_budget_mb;  // --time: rematerialise the step under this budget
};

// Keras-style initial values leave every gamma at 1 and every beta, bias and moving
// mean at 0, which would hide a mix-up between them from the agreement check. Moves each
// such tensor to a deterministic nearby value: ones-initialised (gamma, moving variance)
// to 1 ± 0.2, zeros-initialised (beta, biases, moving mean) to ± 0.1.
void perturb_constants(const nn::ParamSet& params, nn::TensorMap& values, uint64_t seed) {
  std::mt19937_64 rng(seed ^ 0x9e3779b97f4a7c15ULL);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  for (const nn::ParamInfo& info : params.all()) {
    const bool ones = info.init.kind == nn::Init::ones, zeros = info.init.kind == nn::Init::zeros;
    if (!ones && !zeros) continue;
    Tensor& t = values.at(info.name);
    for (int64_t i = 0; i < t.numel(); ++i) t.set_item(i, ones ? 1.0 + 0.2 * u(rng) : 0.1 * u(rng));
  }
  // Centroids drawn N(0, 0.05²) all sit near 6·sigmoid(0) = 3: the quantized remote
  // features are then nearly constant, and the remote predictor's first batch norm
  // subtracts nearly equal numbers, which float32 resolves poorly. Spread them over the
  // ReLU6 range as a trained quantizer's are: 6·sigmoid(raw_j) = 6·(j + ½)/J, jittered.
  Tensor& c = values.at("quantizer.centroids");
  const int64_t n = c.numel();
  for (int64_t j = 0; j < n; ++j) {
    const double q = (static_cast<double>(j) + 0.5 + 0.2 * u(rng)) / static_cast<double>(n);
    c.set_item(j, std::log(q / (1.0 - q)));
  }
}

json preset_json(const models::AgileNNPreset& p) {
  json rp = json::array(), ref = json::array();
  for (const auto& s : p.rp_stages) rp.push_back({{"t", s.t}, {"c", s.c}, {"n", s.n}, {"s", s.s}});
  for (const auto& s : p.reference.stages)
    ref.push_back({{"block", s.block == models::EfficientStage::fused_mbconv ? "fused_mbconv" : "mbconv"},
                   {"expand", s.expand},
                   {"stride", s.stride},
                   {"channels", s.channels},
                   {"layers", s.layers},
                   {"se_ratio", s.se_ratio}});
  return {{"name", p.name},
          {"input_size", p.input_size},
          {"fe_stride", p.fe_stride},
          {"fe_mid_channels", p.fe_mid_channels},
          {"feature_channels", p.feature_channels},
          {"split_ratio", p.split_ratio},
          {"local_channels", p.local_channels()},
          {"num_centroids", p.num_centroids},
          {"rp_stem_channels", p.rp_stem_channels},
          {"rp_stages", rp},
          {"rp_head_channels", p.rp_head_channels},
          {"bn_momentum", p.bn_momentum},
          {"bn_eps", p.bn_eps},
          {"reference",
           {{"stages", ref},
            {"head_channels", p.reference.head_channels},
            {"bn_momentum", p.reference.bn_momentum},
            {"bn_eps", p.reference.bn_eps}}}};
}

train::AgileNNStepOptions step_options(const Options& o, bool attribution) {
  train::AgileNNStepOptions opt;
  opt.preset = models::preset(o.preset);
  opt.classes = o.classes;
  opt.batch = o.batch;
  opt.ig.steps = o.m;
  opt.ig.rule = xai::parse_ig_rule(o.rule);
  opt.attribution = attribution;
  opt.zero_point_table = o.table;
  opt.quantizer = o.quantizer == "soft" ? models::QuantizerMode::soft : models::QuantizerMode::straight_through;
  opt.dtype = o.dtype == "f64" ? DType::f64 : DType::f32;
  return opt;
}

// The optimizer agilenn-bench's BM_Step runs (bench/step.cpp).
constexpr double kLr = 0.01, kMomentum = 0.9, kWeightDecay = 5e-4;
constexpr int64_t kLrSteps = 1000;

std::unique_ptr<train::Optimizer> bench_optimizer() {
  return std::make_unique<train::SGDW>(train::CosineSchedule{kLr, kLrSteps, 0}, kMomentum, kWeightDecay);
}

// Evaluates the step once; prefix "" for the AgileNN step, "plain/" for the plain one.
void evaluate_into(const train::StepGraph& s, const Feeds& feeds, const std::string& prefix, nn::TensorMap& out) {
  const std::vector<Tensor> r = evaluate(s.graph, train::step_outputs(s), feeds, cpu_backend());
  size_t i = 0;
  out[prefix + "loss"] = r[i++];
  for (const auto& [name, v] : s.metrics) out[prefix + "metric/" + name] = r[i++];
  for (const std::string& name : s.trainable) out[prefix + "grad/" + name] = r[i++];
  for (const auto& [name, v] : s.state_updates) out[prefix + "state/" + name] = r[i++];
}

// --time: times `time_iters` steps of one kind after `warmup` through a Trainer on the
// backend (SGDW update included), as BM_Step does, in a process that has done nothing else:
// weights, batch and zero-point table are read back from the case written before.
int time_case(const Options& o) {
  AGILENN_CHECK(o.kind == "agilenn" || o.kind == "plain", "--kind must be agilenn or plain, got '" << o.kind << "'");
  const io::Checkpoint w = io::load_checkpoint(o.out + "/weights.safetensors");
  const io::Checkpoint b = io::load_checkpoint(o.out + "/batch.safetensors");
  Backend& be = open_backend(o.device);
  auto step = train::build_agilenn_step(step_options(o, o.kind == "agilenn"));
  io::check_against(w, step->params, o.out + "/weights.safetensors");
  const std::string table_name = step->zero_point_table;
  Tensor table;
  if (!table_name.empty()) table = io::load_checkpoint(o.out + "/expected.safetensors").tensors.at(table_name);
  std::optional<size_t> budget;
  if (o.memory_budget_mb) budget = static_cast<size_t>(*o.memory_budget_mb * (1 << 20));
  const CompileOptions compile = train::step_compile_options(be, budget);  // as agilenn-train compiles it
  train::Trainer t(std::move(step), w.tensors, bench_optimizer(), be, compile);
  if (!table_name.empty()) t.set_input(table_name, table);
  const Tensor images = be.to_device(b.tensors.at("images")), labels = be.to_device(b.tensors.at("labels"));
  for (int i = 0; i < o.warmup; ++i) t.step(images, labels);
  std::vector<double> ms;
  for (int i = 0; i < o.time_iters; ++i) {
    const auto start = std::chrono::steady_clock::now();
    t.step(images, labels);  // reads the loss to the host: the step has finished
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  // Step memory: what the step allocates beyond the state that lives across steps
  // (parameters, BN statistics, momenta, the batch): the planned arena of intermediates
  // plus the step's outputs (loss, metrics, gradients, new BN statistics).
  const Graph& g = t.graph().graph;
  size_t outputs = 0;
  for (NodeId id : t.plan().outputs)
    outputs += static_cast<size_t>(numel(g.node(id).shape)) * dtype_size(g.node(id).dtype);
  json r = {{"kind", o.kind}, {"device", o.device}, {"batch", o.batch}, {"warmup", o.warmup}, {"iters", o.time_iters}};
  r["arena_bytes"] = t.plan().memory.arena_bytes;
  const Plan& plan = t.plan();
  r["arena_bytes_without_in_place"] = plan_memory(g, plan.order, plan.reads, plan.outputs, false).arena_bytes;
  r["output_bytes"] = outputs;
  if (compile.memory_budget) {
    r["memory_budget_bytes"] = *compile.memory_budget;
    r["recomputed_nodes"] = plan.recomputed;
    r["live_peak_bytes"] = plan.memory.live_peak_bytes;
    r["live_peak_bytes_without_remat"] = plan.live_peak_without_remat;
  }
  r["step_memory_bytes"] = t.plan().memory.arena_bytes + outputs;
  r["memory_measure"] = "planned arena of intermediates + the step's outputs (gradients, loss, metrics, BN statistics)";
  r["includes_update"] = true;
  std::vector<double> sorted = ms;
  std::sort(sorted.begin(), sorted.end());
  r["step_ms"] = ms;
  r["median_ms"] = sorted[sorted.size() / 2];
  r["images_per_s"] = 1000.0 * static_cast<double>(o.batch) / sorted[sorted.size() / 2];
  const std::string name = o.kind + (compile.memory_budget ? "-remat" : "");
  io::write_file_atomically(o.out + "/timing-" + name + ".json", r.dump(2) + "\n");
  std::cout << "agilenn-peer-reference: " << name << " step " << r["median_ms"].get<double>() << " ms (median of "
            << o.time_iters << "), step memory " << (r["step_memory_bytes"].get<size_t>() >> 20) << " MiB" << std::endl;
  return 0;
}

int run(const Options& o) {
  if (o.time_iters > 0) return time_case(o);
  AGILENN_CHECK(o.dtype == "f32" || o.dtype == "f64", "--dtype must be f32 or f64, got '" << o.dtype << "'");
  const train::AgileNNStepOptions opt = step_options(o, true);
  const DType dt = opt.dtype;
  auto step = train::build_agilenn_step(opt);
  auto plain = train::build_agilenn_step(step_options(o, false));
  const models::AgileNNPreset& p = opt.preset;

  nn::TensorMap values = step->params.initialise(o.seed, dt);
  if (o.perturb) perturb_constants(step->params, values, o.seed);
  Tensor table;
  if (!step->zero_point_table.empty()) table = train::compute_zero_point_table(p, o.classes, values, dt, cpu_backend());

  data::Batch b =
      data::SyntheticDataset(o.classes, p.input_size, p.input_size, 3, o.batch, o.data_seed).batch(0, o.batch);
  b.images = b.images.to(dt);

  Feeds feeds;
  for (const auto& [name, t] : values) feeds[name] = t;
  feeds["images"] = b.images;
  feeds["labels"] = b.labels;
  nn::TensorMap expected;
  if (!step->zero_point_table.empty()) {
    feeds[step->zero_point_table] = table;
    expected[step->zero_point_table] = table;
  }
  evaluate_into(*step, feeds, "", expected);
  evaluate_into(*plain, feeds, "plain/", expected);

  const xai::Quadrature q = xai::quadrature(opt.ig.rule, opt.ig.steps);
  json params = json::array();
  for (const nn::ParamInfo& info : step->params.all())
    params.push_back({{"name", info.name},
                      {"shape", info.shape},
                      {"kind", info.kind == LeafKind::state ? "state" : "parameter"},
                      {"trainable", info.trainable}});
  json cfg = {{"preset", preset_json(p)},
              {"batch", o.batch},
              {"classes", o.classes},
              {"dtype", o.dtype},
              {"seed", o.seed},
              {"data_seed", o.data_seed},
              {"perturbed_constants", o.perturb},
              {"ig", {{"m", o.m}, {"rule", o.rule}, {"alphas", q.alphas}, {"weights", q.weights}}},
              {"zero_point_table", step->zero_point_table.empty() ? json(nullptr) : json(step->zero_point_table)},
              {"quantizer", o.quantizer},
              {"rho", opt.preset.rho},
              {"lambda", opt.preset.lambda},
              {"optimizer",
               {{"name", "sgdw"}, {"lr", kLr}, {"cosine_steps", kLrSteps}, {"momentum", kMomentum},
                {"weight_decay", kWeightDecay}, {"step", 0}}},
              {"layouts",
               {{"images", "NHWC"},
                {"conv", "HWIO [KH,KW,Cin/groups,Cout]"},
                {"depthwise", "[KH,KW,1,C]"},
                {"dense", "[in,out]"},
                {"padding", "TensorFlow same"}}},
              {"trainable", step->trainable},
              {"plain_trainable", plain->trainable},
              {"params", params},
              {"metrics", [&] {
                 json m = json::array();
                 for (const auto& [name, v] : step->metrics) m.push_back(name);
                 return m;
               }()},
              {"engine_version", io::kEngineVersion}};

  const std::string dir = o.out;
  io::Checkpoint w, batch, exp;
  w.tensors = values;
  w.metadata = {{"what", "agilenn peer reference: weights"}};
  batch.tensors = {{"images", b.images}, {"labels", b.labels}};
  batch.metadata = {{"what", "agilenn peer reference: batch"}};
  exp.tensors = expected;
  exp.metadata = {{"what", "agilenn peer reference: expected outputs"}};
  io::save_checkpoint(dir + "/weights.safetensors", w);
  io::save_checkpoint(dir + "/batch.safetensors", batch);
  io::save_checkpoint(dir + "/expected.safetensors", exp);
  io::write_file_atomically(dir + "/config.json", cfg.dump(2) + "\n");
  std::cout << "agilenn-peer-reference: " << p.name << " batch " << o.batch << " m " << o.m << " " << o.rule << " "
            << o.dtype << ": loss " << expected.at("loss").item(0) << ", " << step->trainable.size()
            << " gradients -> " << dir << std::endl;

  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"agilenn-peer-reference: one AgileNN step written out for the PyTorch/JAX peers (bench/peers/)"};
  Options o;
  app.add_option("--preset", o.preset, "tiny or paper")
      ->capture_default_str()
      ->check(CLI::IsMember(models::preset_names()));
  app.add_option("--batch-size,--batch", o.batch, "batch size")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--ig-steps,--m", o.m, "integrated-gradients points m")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--ig-rule,--rule", o.rule, "left, right, middle, trapezoid or gauss-legendre")
      ->capture_default_str()
      ->check(CLI::IsMember(xai::ig_rule_names()));
  app.add_option("--classes", o.classes, "classes")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--seed", o.seed, "initialisation seed")->capture_default_str();
  app.add_option("--data-seed", o.data_seed, "synthetic-data seed (BM_Step uses 3)")->capture_default_str();
  app.add_option("--dtype", o.dtype, "f32 or f64")->capture_default_str();
  app.add_option("--quantizer", o.quantizer, "straight-through or soft")
      ->capture_default_str()
      ->check(CLI::IsMember({"straight-through", "soft"}));
  app.add_flag("!--no-perturb", o.perturb,
               "keep every value as ParamSet::initialise draws it (constant BN/bias values, centroids near 3)");
  app.add_flag("!--no-table", o.table, "compute the α = 0 IG point through the net instead of the per-class table");
  app.add_option("--out", o.out, "output directory")->required();
  app.add_option("--time", o.time_iters,
                 "instead of writing the case: time N steps of --kind on the case already in --out")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--kind", o.kind, "with --time: agilenn (the second-order step) or plain")->capture_default_str();
  app.add_option("--memory-budget-mb", o.memory_budget_mb,
                 "with --time: rematerialise the step's values under this budget (0: as far as that goes; "
                 "agilenn-train's flag), writing timing-<kind>-remat.json")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--warmup", o.warmup, "untimed steps before timing")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--device", o.device, "device for the timing: cpu or cuda (CUDA builds)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::cerr << "agilenn-peer-reference: " << e.what() << std::endl;
    return 1;
  }
}
