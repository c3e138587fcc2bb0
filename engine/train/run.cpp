#include "engine/train/run.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <optional>
#include <tuple>
#include <ostream>
#include <sstream>

#include "engine/core/error.h"
#include "engine/core/progress.h"
#include "engine/data/loader.h"
#include "engine/dist/communicator.h"
#include "engine/io/checkpoint.h"
#include "engine/io/tensorboard.h"
#include "engine/models/import_reference.h"
#include "engine/train/bn_statistics.h"
#include "engine/train/figures.h"
#include "engine/train/trainer.h"
#include "engine/xai/channel_remap.h"

namespace agilenn::train {
namespace {

using nlohmann::json;

const char* mode_name(RunMode m) { return m == RunMode::reference ? "reference" : "agilenn"; }

RunMode parse_mode(const std::string& name) {
  for (RunMode m : {RunMode::reference, RunMode::agilenn})
    if (name == mode_name(m)) return m;
  AGILENN_THROW("unknown run mode '" << name << "' (reference, agilenn)");
}

// Runs `check`, prefixing what it throws with the flag and the value at fault.
void as_flag(const char* flag, const auto& value, const auto& check) {
  try {
    check();
  } catch (const Error& e) {
    AGILENN_THROW(flag << " " << value << ": " << e.what());
  }
}

bool augment(const RunConfig& c) { return c.augment >= 0 ? c.augment != 0 : c.preset.augment; }

// The channel remapping a run applies ("" for none): AgileNN with the attribution losses only.
std::string remapping(const RunConfig& c) {
  if (c.mode != RunMode::agilenn || !c.attribution) return "";
  const std::string m = c.channel_remapping.empty() ? c.preset.channel_remapping : c.channel_remapping;
  return m == "none" ? "" : m;
}

// The input normalisation: the dataset's, or (reference net) what its pretrained weights expect.
std::string normalization(const RunConfig& c) {
  return c.mode == RunMode::reference && !c.normalization.empty() ? c.normalization : "dataset";
}

const char* padding_name(ops::Padding p) { return p == ops::Padding::symmetric ? "symmetric" : "same"; }

ops::Padding parse_padding(const std::string& name) {
  AGILENN_CHECK(name == "same" || name == "symmetric", "unknown reference-net padding '" << name << "'");
  return name == "same" ? ops::Padding::same : ops::Padding::symmetric;
}

int64_t eval_bn_batches(const RunConfig& c) {
  return c.eval_bn_batches >= 0 ? c.eval_bn_batches : c.preset.eval_bn_batches;
}

int64_t classes_of(const data::ImageDataset& train, const data::ImageDataset& test) {
  AGILENN_CHECK(train.classes == test.classes, "train and test splits disagree on the number of classes");
  return train.classes;
}

// `gradients` false with `training`: the train-mode forward that batch-norm statistics are
// recomputed with (no attribution terms: they do not reach a batch norm of the model).
// `replicas` > 1 with cfg.sync_bn: SyncBN over that many ranks (the training step).
std::unique_ptr<StepGraph> build_step(const RunConfig& c, int64_t classes, int64_t batch, bool training,
                                      bool gradients = true, int64_t replicas = 1) {
  const int64_t sync = c.sync_bn ? replicas : 1;
  if (c.mode == RunMode::reference)
    return build_reference_step(c.preset, classes, batch, training, DType::f32, gradients, sync);
  AgileNNStepOptions o;
  o.sync_bn_replicas = sync;
  o.preset = c.preset;
  o.classes = classes;
  o.batch = batch;
  o.ig = c.ig;
  o.ig.replicas = replicas;
  o.training = training;
  o.gradients = gradients;
  o.attribution = c.attribution && gradients;
  return build_agilenn_step(o);
}

// Accuracy, skewness and code statistics over the whole test split (padded last batch),
// and, for AgileNN, the figures of where the importance sits.
struct Evaluation {
  double accuracy = 0, skewness = 0, entropy_bits = 0, raw_bits = 0;
  EvaluationFigures figures;
};

// A tensor in the backend's memory (uploaded once when it is a host tensor).
Tensor on(Backend& backend, const Tensor& t) { return t.device() == backend.device() ? t : backend.to_device(t); }

// The attribution statistics are per sample, so the batch size does not change them.
// `values` and `table` may be in the backend's memory already (a trainer's) or on the host.
// The figures show the first `figure_samples` test images (those of the first batch). In a
// job of N ranks, rank r evaluates the batches b ≡ r (mod N) and the sums are reduced over
// the ranks (every rank returns the whole split's numbers; the per-sample skewness kept for
// the figures is rank r's share).
Evaluation evaluate(const RunConfig& c, int64_t classes, const data::ImageDataset& test, const nn::TensorMap& values,
                    const Tensor& table, int64_t eval_batch, int64_t figure_samples, Backend& backend,
                    std::ostream& log) {
  const int64_t batch = std::min(eval_batch, test.size());
  auto step = build_step(c, classes, batch, false);
  const bool agilenn = c.mode == RunMode::agilenn;
  const bool attribution = agilenn && c.attribution;
  // Outputs: per-sample correct (and skewness); AgileNN: the codes, the centroids, the
  // logits; with attribution: the channel importance and the attribution map.
  std::vector<NodeId> outs;
  for (const auto& [name, v] : step->per_sample) outs.push_back(v.id());
  const size_t codes_at = outs.size();
  if (agilenn) outs.insert(outs.end(), {step->quantized.id(), step->centroids.id(), step->logits.id()});
  if (attribution) outs.insert(outs.end(), {step->channel_importance.id(), step->attribution.id()});
  Executor ex(step->graph, compile(step->graph, outs), backend);
  ex.set_graph_replay(c.graph_replay);
  Feeds feeds;
  for (const nn::ParamInfo& info : step->params.all()) feeds[info.name] = on(backend, values.at(info.name));
  if (!step->zero_point_table.empty()) feeds[step->zero_point_table] = on(backend, table);
  data::Loader loader(test, batch, preprocessing(c, false), c.seed, false);
  Evaluation e;
  EvaluationFigures& fig = e.figures;
  fig.local_channels = c.preset.local_channels();
  std::vector<double>& histogram = fig.code_counts;
  if (agilenn) histogram.assign(static_cast<size_t>(c.preset.num_centroids), 0.0);
  if (attribution) fig.channel_importance.assign(static_cast<size_t>(c.preset.feature_channels), 0.0);
  const int64_t samples = attribution ? std::min({figure_samples, batch, test.size()}) : 0;
  int64_t seen = 0;
  const int64_t codes_per_image = agilenn ? numel(step->quantized.shape()) / batch : 0;
  const int rank = dist::world().rank(), ranks = dist::world().size();
  const int64_t covering = loader.batches_covering();
  Progress progress(log, Progress::mode_for(log), "evaluating", (covering - rank + ranks - 1) / ranks,
                    static_cast<double>(batch), "images");
  for (int64_t b = rank; b < covering; b += ranks) {
    progress.update(b / ranks);
    const data::Loader::LoadedBatch lb = loader.get(0, b);
    feeds["images"] = lb.batch.images;
    feeds["labels"] = lb.batch.labels;
    std::vector<Tensor> r = ex.run(feeds);
    // The attribution map and the logits come to the host only for the pictured samples.
    for (size_t i = 0; i < r.size(); ++i)
      if (b == 0 || (i != codes_at + 2 && i != codes_at + 4)) r[i] = backend.to_host(r[i]);
    ex.check_faults();
    for (int64_t i = 0; i < lb.valid; ++i) {
      e.accuracy += r[0].item(i);
      if (attribution) fig.skewness.push_back(r[1].item(i));
    }
    if (agilenn) {
      const Tensor& q = r[codes_at];
      const Tensor& cv = r[codes_at + 1];
      for (int64_t i = 0; i < lb.valid * codes_per_image; ++i) {
        int64_t k = 0;
        while (k + 1 < cv.numel() && cv.item(k) != q.item(i)) ++k;
        histogram[static_cast<size_t>(k)] += 1;
      }
      if (b == 0) fig.centroids = cv.to_vector();
    }
    if (attribution) {
      const Tensor& importance = r[codes_at + 3];
      const int64_t channels = importance.dim(1);
      for (int64_t i = 0; i < lb.valid; ++i) {
        double total = 0;
        for (int64_t ch = 0; ch < channels; ++ch) total += importance.item(i * channels + ch);
        for (int64_t ch = 0; ch < channels && total > 0; ++ch)
          fig.channel_importance[static_cast<size_t>(ch)] += importance.item(i * channels + ch) / total;
      }
    }
    for (int64_t i = 0; i < (b == 0 ? samples : 0); ++i) {
      const Tensor& logits = r[codes_at + 2];
      SampleFigure f;
      f.index = i;
      f.label = test.labels[static_cast<size_t>(i)];
      for (int64_t k = 1; k < classes; ++k)
        if (logits.item(i * classes + k) > logits.item(i * classes + f.predicted)) f.predicted = static_cast<int32_t>(k);
      f.input = image_of(test, i);
      std::tie(f.local, f.remote) = importance_heatmaps(r[codes_at + 4], i, fig.local_channels, test.width, test.height);
      fig.samples.push_back(std::move(f));
    }
    seen += lb.valid;
  }
  for (double v : fig.skewness) e.skewness += v;
  if (ranks > 1) {
    std::vector<double> sums{e.accuracy, e.skewness, static_cast<double>(seen)};
    sums.insert(sums.end(), histogram.begin(), histogram.end());
    sums.insert(sums.end(), fig.channel_importance.begin(), fig.channel_importance.end());
    dist::world().all_reduce_sum(sums.data(), static_cast<int64_t>(sums.size()), DType::f64);
    e.accuracy = sums[0], e.skewness = sums[1], seen = static_cast<int64_t>(sums[2]);
    std::copy_n(sums.begin() + 3, histogram.size(), histogram.begin());
    std::copy_n(sums.begin() + 3 + static_cast<long>(histogram.size()), fig.channel_importance.size(),
                fig.channel_importance.begin());
  }
  e.accuracy /= static_cast<double>(seen);
  e.skewness /= static_cast<double>(seen);
  for (double& v : fig.channel_importance) v /= static_cast<double>(seen);
  if (agilenn) {
    double total = 0, entropy = 0;
    for (double h : histogram) total += h;
    for (double h : histogram)
      if (h > 0) entropy -= h / total * std::log2(h / total);
    e.entropy_bits = entropy * static_cast<double>(codes_per_image);
    e.raw_bits = std::log2(static_cast<double>(c.preset.num_centroids)) * static_cast<double>(codes_per_image);
  }
  return e;
}

// What every checkpoint a run writes says of itself (evaluate_checkpoint and a resume read it).
json checkpoint_metadata(const RunConfig& c, int64_t step, int64_t epoch, double best, int64_t classes,
                         const json& metrics) {
  return {{"config", config_json(c)}, {"step", step},       {"epoch", epoch},
          {"best_accuracy", best},     {"classes", classes}, {"engine_version", io::kEngineVersion},
          {"metrics", metrics},        {"ranks", dist::world().size()}};
}

// The seed fine-tunes pretrained weights with Adam from 1e-4 (DESIGN.md §7): a run from
// --init starts there unless --lr says otherwise; from scratch, at the preset's rate.
constexpr double kSeedFineTuneLr = 1e-4;

std::unique_ptr<Optimizer> make_optimizer(const RunConfig& c, int64_t total_steps) {
  if (c.mode == RunMode::reference) {
    const double initial = c.lr > 0 ? c.lr : c.init.empty() ? c.preset.reference_lr : kSeedFineTuneLr;
    return std::make_unique<Adam>(CosineSchedule{initial, total_steps, 0.01});
  }
  return std::make_unique<SGDW>(CosineSchedule{c.lr > 0 ? c.lr : c.preset.lr, total_steps, 0.0});
}

// Reference-net values for an AgileNN run: the body of a checkpoint written in reference mode.
void load_reference(const RunConfig& c, nn::TensorMap& values, const nn::ParamSet& params) {
  const io::Checkpoint ref = io::load_checkpoint(c.reference);
  for (const nn::ParamInfo& info : params.all()) {
    if (info.name.rfind("ref.", 0) != 0) continue;
    auto it = ref.tensors.find(info.name);
    AGILENN_CHECK(it != ref.tensors.end(), "'" << c.reference << "' has no tensor '" << info.name
                                               << "': is it a reference-net checkpoint of preset '" << c.preset.name << "'?");
    AGILENN_CHECK(it->second.shape() == info.shape, "'" << c.reference << "': tensor '" << info.name << "' is "
                                                        << shape_str(it->second.shape()) << ", expected "
                                                        << shape_str(info.shape));
    values[info.name] = it->second;
  }
}

// The conventions a run takes from the reference-net checkpoint it builds on (--init, or
// --reference for AgileNN): the reference net's padding and, for --init, the input
// normalisation its weights expect.
RunConfig with_inherited_conventions(RunConfig c) {
  const std::string from = c.mode == RunMode::reference ? c.init : c.attribution ? c.reference : std::string();
  if (from.empty()) return c;
  const io::Checkpoint ck = io::load_checkpoint(from);
  AGILENN_CHECK(ck.metadata.contains("config"), "'" << from << "' has no run configuration in its metadata");
  const RunConfig origin = config_from_json(ck.metadata.at("config"));
  AGILENN_CHECK(origin.mode == RunMode::reference && origin.preset.name == c.preset.name,
                "'" << from << "' is not a reference-net checkpoint of preset '" << c.preset.name << "' (it holds "
                    << mode_name(origin.mode) << " of preset '" << origin.preset.name << "')");
  c.preset.reference.padding = origin.preset.reference.padding;
  if (c.mode == RunMode::reference && c.normalization.empty()) c.normalization = normalization(origin);
  return c;
}

// Where a run starts: fresh parameters (with the frozen reference net's body for AgileNN),
// or everything from `latest` when resuming.
struct StartState {
  nn::TensorMap values;
  int64_t done = 0;   // steps already taken
  double best = 0;    // best test accuracy so far
};

StartState start_or_resume(const RunConfig& cfg, const StepGraph& step, Optimizer& optimizer,
                           const std::string& latest, std::ostream& log) {
  StartState s;
  s.values = step.params.initialise(cfg.seed, DType::f32);
  // Rank 0 decides (it writes the checkpoints); every rank must then see the same file.
  int32_t resume = cfg.resume && dist::world().rank() == 0 && std::filesystem::exists(latest) ? 1 : 0;
  dist::world().broadcast(&resume, sizeof resume, 0);
  if (resume != 0) {
    AGILENN_CHECK(std::filesystem::exists(latest),
                  dist::rank_prefix() << "rank 0 resumes from '" << latest << "', which this rank cannot see: --out "
                                      << "must be on a file system every node shares");
    const io::Checkpoint ck = io::load_checkpoint(latest);
    io::check_against(ck, step.params, latest);
    AGILENN_CHECK(config_json(config_from_json(ck.metadata.at("config"))) == config_json(cfg),
                  "'" << latest << "' was written with another configuration: " << ck.metadata.at("config").dump());
    const int64_t ranks = ck.metadata.value("ranks", int64_t{1});
    AGILENN_CHECK(ranks == dist::world().size(),
                  "'" << latest << "' was written by a run of " << ranks << " rank(s) (global batch " << ranks << " × "
                      << cfg.batch << "); resume it with " << ranks << " (mpirun -np " << ranks << "), not "
                      << dist::world().size() << ": another number of ranks changes the global batch and the schedule");
    for (const nn::ParamInfo& info : step.params.all()) s.values[info.name] = ck.tensors.at(info.name);
    for (const auto& [name, t] : ck.tensors)
      if (name.rfind("optimizer/", 0) == 0) optimizer.slots()[name.substr(10)] = t;
    s.done = ck.metadata.at("step").get<int64_t>();
    s.best = ck.metadata.at("best_accuracy").get<double>();
    log << "resuming from " << latest << " at step " << s.done << "\n";
  } else if (cfg.mode == RunMode::agilenn && cfg.attribution) {
    load_reference(cfg, s.values, step.params);
  } else if (!cfg.init.empty()) {
    const io::Checkpoint init = io::load_checkpoint(cfg.init);
    io::check_against(init, step.params, cfg.init);
    for (const nn::ParamInfo& info : step.params.all()) s.values[info.name] = init.tensors.at(info.name);
    log << "starting from " << cfg.init << "\n";
  }
  return s;
}

// The seed's channel remapping before training: ranks the feature channels by their
// attributions under the untrained feature extractor, over training batches (one pass over
// the data unless the preset says fewer), and permutes them so the most important are local.
// Every rank of a job ranks the channels on the same global batches (all of each, not its
// shard), so the replicas stay equal and equal to one rank's with the global batch.
void remap_channels(const RunConfig& cfg, int64_t classes, nn::TensorMap& values, const Tensor& table,
                    const data::ImageDataset& train_set, int64_t per_epoch, Backend& backend, std::ostream& log) {
  const std::string remap = remapping(cfg);
  if (remap.empty()) return;
  const int64_t global_batch = cfg.batch * dist::world().size();
  const data::Loader loader(train_set, global_batch, preprocessing(cfg, augment(cfg)), cfg.seed, true);
  auto probe = build_step(cfg, classes, global_batch, false);
  Executor ex(probe->graph, compile(probe->graph, {probe->channel_importance.id()}), backend);
  Feeds feeds;
  for (const nn::ParamInfo& info : probe->params.all()) feeds[info.name] = on(backend, values.at(info.name));
  feeds[probe->zero_point_table] = on(backend, table);
  xai::ChannelImportance importance(cfg.preset.feature_channels, cfg.preset.local_channels());
  const int64_t probe_batches = cfg.preset.channel_remapping_batches > 0
                                    ? std::min(cfg.preset.channel_remapping_batches, per_epoch)
                                    : per_epoch;
  for (int64_t b = 0; b < probe_batches; ++b) {
    const data::Batch batch = loader.get(0, b).batch;
    feeds["images"] = batch.images;
    feeds["labels"] = batch.labels;
    importance.add(backend.to_host(ex.run(feeds)[0]));
  }
  std::vector<int64_t> order = importance.order(xai::parse_remap_method(remap));
  // Rank 0's order for every rank, so that a near-tie ranked apart by rounding cannot leave
  // the replicas permuted differently.
  dist::world().broadcast(order.data(), order.size() * sizeof(int64_t), 0);
  xai::permute_feature_channels(values, order);
  log << "channel remapping (" << remap << ", " << probe_batches << " batches):";
  for (size_t i = 0; i < order.size(); ++i) log << " " << order[i] << "->" << i;
  log << "\n";
}


// A resumed run redoes the steps after its checkpoint: metrics.jsonl keeps the lines of
// steps up to `done` and loses the rest, a line cut short by a crash included, so the
// file ends as an uninterrupted run's would.
void trim_metrics(const std::string& path, int64_t done) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return;
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::string kept;
  for (size_t begin = 0, end; (end = text.find('\n', begin)) != std::string::npos; begin = end + 1) {
    const std::string line = text.substr(begin, end - begin);
    const json j = json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.is_object() && j.contains("step") && j["step"].is_number_integer() &&
        j["step"].get<int64_t>() <= done)
      kept += line + "\n";
  }
  if (kept.size() != text.size()) io::write_file_atomically(path, kept);
}

// What a run writes about itself as it trains: a line per step and per evaluation in
// metrics.jsonl, the same scalars as TensorBoard events, and the epoch's running means for
// the progress line and the epoch's summary line.
class RunLog {
 public:
  // cfg.out must exist.
  RunLog(const RunConfig& cfg, int64_t per_epoch)
      : cfg_(cfg),
        per_epoch_(per_epoch),
        metrics_((std::filesystem::path(cfg.out) / "metrics.jsonl").string(), std::ios::app),
        events_((std::filesystem::path(cfg.out) / "tensorboard").string()) {
    AGILENN_CHECK(metrics_, "cannot write metrics in '" << cfg.out << "'");
  }

  void step(const StepResult& r, double lr) {
    const double acc = r.metrics.at("correct") / static_cast<double>(cfg_.batch);
    json line = {{"step", r.step + 1}, {"epoch", r.step / per_epoch_}, {"loss", r.loss}, {"accuracy", acc}};
    for (const auto& [k, v] : r.metrics)
      if (k != "correct") line[k] = v;
    line["lr"] = lr;
    metrics_ << line.dump() << "\n";
    for (const auto& [k, v] : line.items())
      if (k != "step" && k != "epoch") events_.scalar("train/" + k, v.get<double>(), r.step + 1);
    sum_loss_ += r.loss, sum_acc_ += acc, in_epoch_ += 1;
    sum_skew_ += r.metrics.count("skewness") ? r.metrics.at("skewness") : 0.0;
  }

  // "loss … acc … [skew …]": the means over the epoch's steps so far ("" before the first).
  std::string running_means() const {
    std::ostringstream f;
    if (in_epoch_ > 0) {
      f << std::fixed << std::setprecision(4) << "loss " << sum_loss_ / in_epoch_ << "  acc " << sum_acc_ / in_epoch_;
      if (skewness()) f << "  skew " << sum_skew_ / in_epoch_;
    }
    return f.str();
  }

  // The epoch that ended with step s (of `stop` this run takes, `total` in all) evaluated:
  // its summary line on `log`, the evaluation in the metrics and events; the running means
  // start again.
  void epoch_end(std::ostream& log, int64_t s, int64_t stop, int64_t total, const Evaluation& ev) {
    const int64_t epoch = s / per_epoch_;
    const auto now = std::chrono::steady_clock::now();
    const double rate = in_epoch_ / std::chrono::duration<double>(now - epoch_start_).count();
    log << "epoch " << epoch + 1 << "/" << cfg_.epochs << "  step " << s + 1 << "/" << total << "  " << std::fixed
        << std::setprecision(2) << rate << " steps/s  ETA " << Progress::duration(static_cast<double>(stop - s - 1) / rate)
        << "  " << running_means() << "  | test acc " << std::setprecision(4) << ev.accuracy;
    if (skewness()) log << "  skew " << ev.skewness;
    log << std::endl;
    metrics_ << json{{"step", s + 1}, {"epoch", epoch}, {"test_accuracy", ev.accuracy}, {"test_skewness", ev.skewness}}
                    .dump()
             << "\n";
    metrics_.flush();
    events_.scalar("test/accuracy", ev.accuracy, s + 1);
    if (skewness()) events_.scalar("test/skewness", ev.skewness, s + 1);
    ev.figures.write(events_, s + 1);
    events_.flush();
    epoch_start_ = std::chrono::steady_clock::now();
    sum_loss_ = sum_acc_ = sum_skew_ = in_epoch_ = 0;
  }

 private:
  bool skewness() const { return cfg_.mode == RunMode::agilenn && cfg_.attribution; }

  const RunConfig& cfg_;
  int64_t per_epoch_;
  std::ofstream metrics_;
  io::EventWriter events_;
  std::chrono::steady_clock::time_point epoch_start_ = std::chrono::steady_clock::now();
  double sum_loss_ = 0, sum_acc_ = 0, sum_skew_ = 0, in_epoch_ = 0;
};

// Batch-norm statistics for evaluation, when the run recomputes them: a train-mode forward
// without gradients over unaugmented training images (what the test split looks like), in
// an order that changes with the epoch. Batches of the global batch's size: every rank of a
// job computes the statistics one rank with that batch would.
class EvalBatchNorm {
 public:
  EvalBatchNorm(const RunConfig& cfg, int64_t classes, const data::ImageDataset& train_set)
      : batches_(eval_bn_batches(cfg)) {
    if (batches_ <= 0) return;
    const int64_t global_batch = cfg.batch * dist::world().size();
    forward_ = build_step(cfg, classes, global_batch, true, false);
    loader_ = std::make_unique<data::Loader>(train_set, global_batch, preprocessing(cfg, false), cfg.seed ^ 0xb17a5ULL,
                                             true);
  }

  // The recomputed statistics replace the trainer's moving averages (so they stay in the
  // checkpoints); nothing when the run evaluates with the moving averages.
  void refresh(Trainer& trainer, int64_t epoch, Backend& backend) const {
    if (!loader_) return;
    const nn::TensorMap stats = recompute_batch_norm_statistics(
        *forward_, trainer.values(), [&](int64_t b) { return loader_->get(epoch, b).batch; },
        std::min(batches_, loader_->batches_per_epoch()), backend);
    trainer.load_state(stats, {});
  }

 private:
  int64_t batches_;
  std::unique_ptr<StepGraph> forward_;
  std::unique_ptr<data::Loader> loader_;
};

// A checkpoint of the trainer's parameters and optimizer slots, as host copies (the file
// is the same whichever backend trained), with `metadata`.
void save_run_checkpoint(const std::string& path, const Trainer& trainer, json metadata) {
  io::Checkpoint ck;
  const nn::TensorMap host = trainer.host_values();
  for (const nn::ParamInfo& info : trainer.graph().params.all()) ck.tensors[info.name] = host.at(info.name);
  for (const auto& [name, t] : trainer.host_slots()) ck.tensors["optimizer/" + name] = t;
  ck.metadata = std::move(metadata);
  io::save_checkpoint(path, ck);
}

}  // namespace

data::Preprocess preprocessing(const RunConfig& c, bool train) {
  return data::Preprocess::for_dataset(c.dataset, c.preset.input_size, train, normalization(c));
}

json config_json(const RunConfig& c) {
  json j = {{"mode", mode_name(c.mode)},
          {"dataset", c.dataset},
          {"preset",
           {{"name", c.preset.name},
            {"split_ratio", c.preset.split_ratio},
            {"num_centroids", c.preset.num_centroids},
            {"input_size", c.preset.input_size},
            {"reference_padding", padding_name(c.preset.reference.padding)}}},
          {"normalization", normalization(c)},
          {"init", c.init},
          {"epochs", c.epochs},
          {"batch", c.batch},
          {"lr", c.lr},
          {"seed", c.seed},
          {"ig_steps", c.ig.steps},
          {"ig_rule", xai::ig_rule_name(c.ig.rule)},
          {"rho", c.preset.rho},
          {"lambda", c.preset.lambda},
          {"reference", c.reference},
          {"channel_remapping", remapping(c)},
          {"train_limit", c.train_limit},
          {"attribution", c.attribution},
          {"eval_bn_batches", eval_bn_batches(c)},
          {"augment", augment(c)}};
  // Written only when on, so that the runs from before it resume with their keys unchanged.
  if (c.sync_bn) j["sync_bn"] = true;
  return j;
}

RunConfig config_from_json(const json& j) {
  RunConfig c;
  c.mode = parse_mode(j.at("mode").get<std::string>());
  c.dataset = j.at("dataset").get<std::string>();
  const json& p = j.at("preset");
  c.preset = models::preset(p.at("name").get<std::string>());
  c.preset.split_ratio = p.at("split_ratio").get<double>();
  c.preset.num_centroids = p.at("num_centroids").get<int64_t>();
  // Runs before these keys were written: the preset's input size, same padding, the
  // dataset's normalisation, no initial checkpoint.
  c.preset.input_size = p.value("input_size", c.preset.input_size);
  c.preset.reference.padding = parse_padding(p.value("reference_padding", std::string("same")));
  c.normalization = j.value("normalization", std::string("dataset"));
  c.init = j.value("init", std::string());
  c.preset.rho = j.at("rho").get<double>();
  c.preset.lambda = j.at("lambda").get<double>();
  c.epochs = j.at("epochs").get<int64_t>();
  c.batch = j.at("batch").get<int64_t>();
  c.lr = j.at("lr").get<double>();
  c.seed = j.at("seed").get<uint64_t>();
  c.ig.steps = j.at("ig_steps").get<int>();
  c.ig.rule = xai::parse_ig_rule(j.at("ig_rule").get<std::string>());
  c.reference = j.at("reference").get<std::string>();
  // The remapping applied, "" for none (where "" in a RunConfig means the preset's).
  const std::string remap = j.at("channel_remapping").get<std::string>();
  c.channel_remapping = remap.empty() ? "none" : remap;
  c.train_limit = j.at("train_limit").get<int64_t>();
  // Runs before these keys were written: all with the attribution losses, evaluated with
  // the moving averages, on augmented images.
  c.attribution = j.value("attribution", true);
  c.eval_bn_batches = j.value("eval_bn_batches", int64_t{0});
  c.augment = j.value("augment", true) ? 1 : 0;
  c.sync_bn = j.value("sync_bn", false);
  return c;
}

void validate(const RunConfig& c) {
  as_flag("--dataset", c.dataset, [&] { data::check_dataset(c.dataset); });
  AGILENN_CHECK(c.epochs > 0, "--epochs " << c.epochs << ": must be positive");
  AGILENN_CHECK(c.batch > 0, "--batch-size " << c.batch << ": must be positive");
  AGILENN_CHECK(c.lr >= 0, "--lr " << c.lr << ": must be 0 (the preset's) or more");
  AGILENN_CHECK(c.eval_bn_batches >= -1, "--eval-bn-batches " << c.eval_bn_batches << ": must be 0 or more");
  AGILENN_CHECK(c.max_steps >= 0, "--max-steps " << c.max_steps << ": must be 0 (all epochs) or more");
  AGILENN_CHECK(c.train_limit >= 0, "--train-limit " << c.train_limit << ": must be 0 (all) or more");
  AGILENN_CHECK(c.test_limit >= 0, "--test-limit " << c.test_limit << ": must be 0 (all) or more");
  AGILENN_CHECK(c.figure_samples >= 0, "--figure-samples " << c.figure_samples << ": must be 0 (none) or more");
  AGILENN_CHECK(c.bucket_bytes > 0, "--bucket-mb: must be positive");
  AGILENN_CHECK(!c.graph_replay || dist::world().size() == 1,
                "--cuda-graph: not with " << dist::world().size() << " ranks yet (a recording cannot start the "
                                              "gradient all-reduces while the backward runs); use --no-cuda-graph");
  const models::AgileNNPreset& p = c.preset;
  const int64_t k = p.local_channels();
  AGILENN_CHECK(k >= 1 && k < p.feature_channels,
                "--split-ratio " << p.split_ratio << ": keeps " << k << " of preset " << p.name << "'s "
                                 << p.feature_channels << " feature channels on the device; it needs 1 to "
                                 << p.feature_channels - 1);
  AGILENN_CHECK(p.num_centroids >= 2 && p.num_centroids <= 64,
                "--num-centroids " << p.num_centroids << ": the quantizer takes 2 to 64 (the CUDA kernels keep a "
                                   << "thread's weights of every centroid in registers)");
  AGILENN_CHECK(p.rho >= 0 && p.rho <= 1, "--rho " << p.rho << ": the target skewness must be in [0, 1]");
  AGILENN_CHECK(p.lambda >= 0 && p.lambda <= 1,
                "--lambda " << p.lambda << ": the classification loss's weight must be in [0, 1]");
  AGILENN_CHECK(p.input_size > 0, "--input-size " << p.input_size << ": must be positive");
  if (!c.normalization.empty()) as_flag("--normalization", c.normalization, [&] { data::check_normalization(c.normalization); });
  AGILENN_CHECK(c.init.empty() || c.mode == RunMode::reference,
                "--init " << c.init << ": only the reference net starts from a checkpoint (AgileNN takes --reference)");
  as_flag("--ig-steps", c.ig.steps, [&] { xai::check_ig_options(c.ig); });
  const std::string& remap = c.channel_remapping;
  if (!remap.empty() && remap != "none") {
    as_flag("--channel-remapping", remap, [&] { xai::parse_remap_method(remap); });
    AGILENN_CHECK(c.attribution, "--channel-remapping " << remap << ": channel remapping ranks channels by their "
                                 "attributions: it needs the attribution losses (not --plain)");
  }
  AGILENN_CHECK(c.mode != RunMode::agilenn || !c.attribution || !c.reference.empty(),
                "--reference not given: AgileNN training needs a checkpoint of the reference net (train one with "
                "`agilenn-train reference`), or --plain to train without the attribution losses");
}

// The replicas' batch-norm moving statistics, averaged over the ranks (without SyncBN each
// replica follows its own shard), so that every rank evaluates, and rank 0 saves, the same
// model.
void average_state_over_ranks(Trainer& trainer) {
  nn::TensorMap state;
  const double ranks = dist::world().size();
  for (const nn::ParamInfo& info : trainer.graph().params.all()) {
    if (info.kind != LeafKind::state) continue;
    Tensor host = trainer.backend().to_host(trainer.values().at(info.name)).clone();
    dist::all_reduce_sum(host);
    for (int64_t i = 0; i < host.numel(); ++i) host.set_item(i, host.item(i) / ranks);
    state.emplace(info.name, host);
  }
  trainer.load_state(state, {});
}

RunSummary run_training(const RunConfig& given, Backend& backend, std::ostream& rank_log) {
  namespace fs = std::filesystem;
  validate(given);
  const int rank = dist::world().rank(), ranks = dist::world().size();
  // Rank 0 alone logs and writes files; the others run silently beside it.
  std::ostream& log = dist::rank0_only(rank_log);
  const bool writer = rank == 0;
  const data::ImageDataset train_set =
      data::first_samples(data::load_dataset(given.dataset, given.data_dir, data::Split::train), given.train_limit);
  const data::ImageDataset test_set =
      data::first_samples(data::load_dataset(given.dataset, given.data_dir, data::Split::test), given.test_limit);
  const RunConfig cfg = with_inherited_conventions(given);
  const int64_t classes = classes_of(train_set, test_set);
  data::Loader loader(train_set, cfg.batch, preprocessing(cfg, augment(cfg)), cfg.seed, true, rank, ranks);
  const int64_t per_epoch = loader.batches_per_epoch(), total = per_epoch * cfg.epochs;
  auto step = build_step(cfg, classes, cfg.batch, true, true, ranks);
  const std::string latest = (fs::path(cfg.out) / "latest.safetensors").string();
  const std::string best_path = (fs::path(cfg.out) / "best.safetensors").string();

  std::unique_ptr<Optimizer> optimizer = make_optimizer(cfg, total);
  StartState start = start_or_resume(cfg, *step, *optimizer, latest, log);
  nn::TensorMap& values = start.values;
  const int64_t done = start.done;
  double best = start.best;

  Tensor table;
  if (!step->zero_point_table.empty()) table = compute_zero_point_table(cfg.preset, classes, values, DType::f32, backend);
  if (done == 0) remap_channels(cfg, classes, values, table, train_set, per_epoch, backend, log);

  CompileOptions compile_options = step_compile_options(backend, cfg.memory_budget);
  if (cfg.fuse) compile_options.fuse = *cfg.fuse;
  Trainer trainer(std::move(step), values, std::move(optimizer), backend, compile_options);
  if (cfg.memory_budget) {
    const Plan& plan = trainer.plan();
    std::ostringstream line;
    line << "memory: the step's arena peaks at " << std::fixed << std::setprecision(1)
         << static_cast<double>(plan.memory.live_peak_bytes) / (1 << 20) << " MiB live ("
         << static_cast<double>(plan.live_peak_without_remat) / (1 << 20) << " MiB keeping every value; "
         << plan.recomputed << " nodes recompute values)\n";
    log << line.str();
  }
  trainer.executor().set_graph_replay(cfg.graph_replay);
  trainer.set_gradient_bucket_bytes(cfg.bucket_bytes);
  if (ranks > 1) {
    log << "data parallel: " << ranks << " ranks (" << dist::world().name() << "), global batch " << ranks << " × "
        << cfg.batch << (cfg.sync_bn ? ", SyncBN" : "");
    if (const GradientBuckets* b = trainer.gradient_buckets())
      log << ", gradients " << b->bytes() << " bytes in " << b->buckets() << " bucket(s)";
    log << "\n";
  }
  if (table.defined()) {
    trainer.set_input(trainer.graph().zero_point_table, table);
    table = on(backend, table);  // for the evaluations: uploaded once
  }
  if (backend.device() != Device::cpu)
    log << "training on " << backend.name() << (cfg.graph_replay ? " (graph replay)" : "") << "\n";
  std::optional<RunLog> run_log;
  if (writer) {
    fs::create_directories(cfg.out);
    // A run killed while writing a file leaves its temporary sibling (io::write_file_atomically).
    for (const auto& entry : fs::directory_iterator(cfg.out))
      if (const std::string name = entry.path().filename().string(); name.starts_with(".") && name.find(".tmp-") != std::string::npos)
        fs::remove(entry.path());
    if (cfg.resume) trim_metrics((fs::path(cfg.out) / "metrics.jsonl").string(), done);
    run_log.emplace(cfg, per_epoch);
  }
  const EvalBatchNorm eval_bn(cfg, classes, train_set);
  auto save = [&](const std::string& path, int64_t step_count, const json& extra) {
    if (writer)
      save_run_checkpoint(path, trainer, checkpoint_metadata(cfg, step_count, step_count / per_epoch, best, classes, extra));
  };

  RunSummary summary;
  const int64_t stop = cfg.max_steps > 0 ? std::min(total, cfg.max_steps) : total;
  // The batch of step s + 1 is taken from the loader before step s, so that its upload to
  // the backend overlaps step s (batches are a pure function of epoch and index).
  std::optional<data::Loader::LoadedBatch> ahead;
  // The steps' losses and metrics come back from the backend at log points only: twice a
  // second (for the progress line) and at the end of an epoch.
  constexpr double kCollectSeconds = 0.5;
  auto last_collect = std::chrono::steady_clock::now();
  std::optional<Progress> progress;
  for (int64_t s = done; s < stop; ++s) {
    const int64_t epoch = s / per_epoch, index = s % per_epoch;
    const data::Loader::LoadedBatch lb = ahead ? std::move(*ahead) : loader.next(epoch, index);
    ahead.reset();
    if (s + 1 < stop) ahead = loader.next((s + 1) / per_epoch, (s + 1) % per_epoch);
    const bool epoch_end = index == per_epoch - 1, last = s + 1 == stop;
    if (!progress) {
      const int64_t first = epoch * per_epoch, end = std::min((epoch + 1) * per_epoch, stop);
      progress.emplace(log, Progress::mode_for(log),
                       "epoch " + std::to_string(epoch + 1) + "/" + std::to_string(cfg.epochs), end - first,
                       static_cast<double>(cfg.batch), "images");
      progress->skip(s - first);
    }
    try {
      trainer.enqueue(lb.batch.images, lb.batch.labels, s, ahead ? &ahead->batch : nullptr);
      const auto now = std::chrono::steady_clock::now();
      if (epoch_end || last || std::chrono::duration<double>(now - last_collect).count() >= kCollectSeconds) {
        for (const StepResult& r : trainer.collect())
          if (run_log) run_log->step(r, trainer.optimizer().learning_rate(r.step));
        last_collect = now;
      }
    } catch (const Error& e) {
      progress.reset();
      AGILENN_THROW(e.what() << " (training stopped; the last good checkpoint is '" << latest << "')");
    }
    const std::vector<std::string> notes = backend.take_notes();
    if (!notes.empty()) progress->clear();
    for (const std::string& n : notes) log << "note: " << n << "\n";
    progress->update(index + 1, run_log ? run_log->running_means() : std::string());
    if (!epoch_end && !last) continue;

    progress.reset();
    if (ranks > 1 && !cfg.sync_bn) average_state_over_ranks(trainer);
    eval_bn.refresh(trainer, epoch, backend);
    // Test batches are 4× the training batch, as the seed's.
    const Evaluation ev = evaluate(cfg, classes, test_set, trainer.values(), table, 4 * cfg.batch,
                                   cfg.figure_samples, backend, log);
    if (run_log) run_log->epoch_end(log, s, stop, total, ev);
    const json extra = {{"test_accuracy", ev.accuracy}, {"test_skewness", ev.skewness}};
    if (ev.accuracy > best || !fs::exists(best_path)) {
      best = std::max(best, ev.accuracy);
      save(best_path, s + 1, extra);
    }
    save(latest, s + 1, extra);
    summary.test_accuracy = ev.accuracy;
    summary.test_skewness = ev.skewness;
    summary.bits_per_image = ev.raw_bits;
    summary.entropy_bits_per_image = ev.entropy_bits;
  }
  summary.steps = stop;
  summary.best_accuracy = best;
  return summary;
}

RunSummary evaluate_checkpoint(const std::string& checkpoint, const EvaluateOptions& options, Backend& backend,
                               std::ostream& rank_log) {
  // Under mpirun every rank evaluates its share of the batches; rank 0 reports and draws.
  std::ostream& log = dist::rank0_only(rank_log);
  AGILENN_CHECK(options.batch > 0, "--batch-size " << options.batch << ": must be positive");
  AGILENN_CHECK(options.figure_samples >= 0, "--figure-samples " << options.figure_samples << ": must be 0 or more");
  const io::Checkpoint ck = io::load_checkpoint(checkpoint);
  RunConfig cfg = config_from_json(ck.metadata.at("config"));
  cfg.data_dir = options.data_dir;
  const int64_t batch = cfg.batch = options.batch;
  AGILENN_CHECK(options.figures_dir.empty() || (cfg.mode == RunMode::agilenn && cfg.attribution),
                "--figures: '" << checkpoint << "' is not an AgileNN model trained with the attribution losses: it "
                               << "has no importance to picture");
  const data::ImageDataset test =
      data::first_samples(data::load_dataset(cfg.dataset, options.data_dir, data::Split::test), options.test_limit);
  const int64_t classes = ck.metadata.at("classes").get<int64_t>();
  auto step = build_step(cfg, classes, batch, false);
  io::check_against(ck, step->params, checkpoint);
  const Tensor table = step->zero_point_table.empty() ? Tensor() : compute_zero_point_table(cfg.preset, classes, ck.tensors, DType::f32, backend);
  const Evaluation ev = evaluate(cfg, classes, test, ck.tensors, table, batch,
                                 options.figures_dir.empty() ? 0 : options.figure_samples, backend, log);
  if (!options.figures_dir.empty()) {
    if (dist::world().rank() == 0) ev.figures.write_png(options.figures_dir);
    log << "figures: " << options.figures_dir << "\n";
  }
  RunSummary s;
  s.steps = ck.metadata.at("step").get<int64_t>();
  s.test_accuracy = ev.accuracy;
  s.test_skewness = ev.skewness;
  s.bits_per_image = ev.raw_bits;
  s.entropy_bits_per_image = ev.entropy_bits;
  log << checkpoint << ": step " << s.steps << "  test accuracy " << ev.accuracy;
  if (cfg.mode == RunMode::agilenn) {
    if (cfg.attribution) log << "  skewness " << ev.skewness;
    log << "  remote codes " << ev.raw_bits << " bits/image";
  }
  log << std::endl;
  return s;
}

void import_reference(const ImportConfig& ic, std::ostream& log) {
  AGILENN_CHECK(!ic.out.empty(), "--out not given: where to write the checkpoint");
  AGILENN_CHECK(!std::filesystem::exists(ic.out),
                "--out " << ic.out << ": exists; the import does not overwrite a file (remove it or choose another)");
  as_flag("--dataset", ic.dataset, [&] { data::check_dataset(ic.dataset); });
  RunConfig c;
  c.mode = RunMode::reference;
  c.dataset = ic.dataset;
  c.preset = models::preset(ic.preset);
  c.preset.reference.padding = models::weights_padding(ic.format);
  c.normalization = models::weights_normalization(ic.format);
  c.seed = ic.seed;
  const int64_t classes = data::dataset_classes(ic.dataset);
  const models::ImportedWeights w =
      models::import_reference_weights(ic.weights, c.preset, {ic.format, classes, ic.keep_classifier, ic.seed});
  for (const std::string& r : w.replaced) log << "replaced by a new " << classes << "-class classifier: " << r << "\n";
  io::Checkpoint ck;
  ck.tensors = w.values;
  ck.metadata = checkpoint_metadata(c, 0, 0, 0.0, classes, json::object());
  ck.metadata["imported"] = {{"weights", ic.weights},
                             {"format", models::weights_format_name(ic.format)},
                             {"classifier", ic.keep_classifier ? "kept" : "new"}};
  io::save_checkpoint(ic.out, ck);
  log << "imported " << w.values.size() << " tensors of " << ic.weights << " (" << models::weights_format_name(ic.format)
      << ") into " << ic.out << ": reference net of preset " << c.preset.name << ", " << classes << " classes, "
      << padding_name(c.preset.reference.padding) << " padding, inputs normalised as '" << c.normalization << "'"
      << std::endl;
}

}  // namespace agilenn::train
