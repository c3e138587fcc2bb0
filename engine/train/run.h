// A whole training run as a researcher starts it: data, loader, step, optimizer,
// per-epoch evaluation, metrics logs, best and latest checkpoints, exact resume.
// agilenn-train is a thin command line over this.
#pragma once

#include <iosfwd>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>

#include "engine/data/loader.h"
#include "engine/models/import_reference.h"
#include "engine/models/presets.h"
#include "engine/runtime/backend.h"
#include "engine/xai/integrated_gradients.h"

namespace agilenn::train {

enum class RunMode { reference, agilenn };

struct RunConfig {
  RunMode mode = RunMode::agilenn;
  std::string dataset = "fashion-mnist";
  std::string data_dir;         // "" = the dataset's default place
  std::string out = "runs/default";
  models::AgileNNPreset preset = models::preset("tiny");
  int64_t epochs = 10;
  int64_t batch = 64;
  double lr = 0;                // 0 = the preset's (AgileNN: SGDW, preset.lr; reference: Adam, preset.reference_lr, or 1e-4 from --init)
  int augment = -1;             // training augmentation: 1 on, 0 off, -1 the preset's
  uint64_t seed = 1;
  xai::IgOptions ig;
  std::string reference;        // agilenn mode: checkpoint of the pretrained reference net
  // reference mode: a checkpoint to start from (agilenn-train import-reference's, say)
  // instead of a fresh initialisation; its padding and normalisation carry over.
  std::string init;
  // reference mode: "dataset", "signed" or "imagenet" (data::Preprocess); "" the init
  // checkpoint's, else the dataset's.
  std::string normalization;
  // "" (the preset's), "none", "global_importance" or "topk_appearance"
  std::string channel_remapping;
  // agilenn mode: false trains the same model without the attribution losses (loss = CE,
  // no IG, no reference net): the baseline AgileNN's accuracy is compared with.
  bool attribution = true;
  // Batch-norm statistics recomputed over this many training batches before each
  // evaluation (engine/train/bn_statistics.h); 0: the moving averages; -1: the preset's.
  int64_t eval_bn_batches = -1;
  bool resume = false;
  int64_t max_steps = 0;        // stop (and checkpoint) after this many steps in total; 0 = all epochs
  int64_t train_limit = 0;      // use only the first N training samples (0 = all)
  int64_t test_limit = 0;       // evaluate on the first N test samples (0 = all)
  bool graph_replay = false;    // record each step's kernels once and replay them (CUDA graphs)
  // Data parallel (a job of N ranks, dist::world()): `batch` is per rank, the global batch
  // N × batch. sync_bn: the model's batch norms take the global batch's statistics.
  bool sync_bn = false;
  size_t bucket_bytes = size_t{25} << 20;  // gradient all-reduce buckets (Trainer)
  // The step's arena: recompute cheap values instead of keeping them until its live peak is
  // at most this many bytes (0: as low as that goes); unset: keep every value (Plan).
  std::optional<size_t> memory_budget;
  // Elementwise fusion of the step (CompileOptions::fuse); unset: step_compile_options'
  // choice for the backend.
  std::optional<bool> fuse;
  // AgileNN with attribution: the test images each evaluation pictures in TensorBoard
  // (engine/train/figures.h); an output option, not part of the run's configuration JSON.
  int64_t figure_samples = 8;
};

// The configuration as checkpoints record it (metadata "config"; a resumed run must match
// it): the fields that decide what is trained, with the preset's defaults resolved (the
// learning rate's 0 excepted); paths, stopping points and replay, which do not, left out.
nlohmann::json config_json(const RunConfig& c);
// The inverse: config_json(config_from_json(j)) == j. Keys that older checkpoints lack
// take the values those runs trained with.
RunConfig config_from_json(const nlohmann::json& j);

// How a run's images are prepared: the dataset's (or, for a reference net from pretrained
// weights, their) normalisation, resized to the preset's input size; augmented when `train`.
data::Preprocess preprocessing(const RunConfig& c, bool train);

// Throws, naming agilenn-train's flag and its value, for anything wrong with `c` that can
// be seen without loading data or opening a device.
void validate(const RunConfig& c);

struct RunSummary {
  int64_t steps = 0;
  double test_accuracy = 0, test_skewness = 0, best_accuracy = 0;
  double bits_per_image = 0;          // remote codes before entropy coding
  double entropy_bits_per_image = 0;  // the same codes at their empirical entropy
};

// Trains per `cfg` (validated first) on `backend`, printing a line per epoch to `log`.
// In a job of N ranks every rank calls it: each trains a replica on its shard of every
// global batch, the evaluation is shared out and summed, and rank 0 alone logs and writes
// the files. Files in cfg.out:
// latest.safetensors, best.safetensors (highest test accuracy), metrics.jsonl, tensorboard/
// (event files). The steps, the evaluations and the zero-point table run on `backend`;
// parameters, state and optimizer slots stay in its memory; checkpoints hold host copies,
// the same file whichever backend wrote it (a run may resume on another backend).
RunSummary run_training(const RunConfig& cfg, Backend& backend, std::ostream& log);

// What evaluate_checkpoint reads and writes besides the checkpoint.
struct EvaluateOptions {
  std::string data_dir;      // "" = the dataset's default place
  int64_t batch = 64;
  std::string figures_dir;   // "": no figures; else the PNG files of EvaluationFigures::write_png
  int64_t figure_samples = 8;
  int64_t test_limit = 0;    // the first N test images (0: all)
};

// Evaluates a checkpoint written by run_training on the test split, on `backend`.
RunSummary evaluate_checkpoint(const std::string& checkpoint, const EvaluateOptions& options, Backend& backend,
                               std::ostream& log);

// agilenn-train import-reference: pretrained EfficientNetV2-S weights as a reference-net
// checkpoint (mode reference, step 0) that `reference --init` fine-tunes and `train
// --reference` uses; it records the weights' padding and input normalisation.
struct ImportConfig {
  std::string weights;  // safetensors file
  models::WeightsFormat format = models::WeightsFormat::torchvision;
  std::string dataset = "cifar100";  // the new classifier's classes
  std::string preset = "paper";
  bool keep_classifier = false;
  uint64_t seed = 1;
  std::string out;  // the checkpoint to write
};
void import_reference(const ImportConfig& config, std::ostream& log);

}  // namespace agilenn::train
