// agilenn-train: pretrain the reference net, train AgileNN with it frozen, or evaluate a
// checkpoint. A thin command line over engine/train/run.h.
#include <CLI/CLI.hpp>

#include <iostream>
#include <optional>

#include "engine/core/error.h"
#include "engine/dist/communicator.h"
#include "engine/runtime/backend_registry.h"
#include "engine/train/run.h"

namespace {

using agilenn::train::RunConfig;

struct DeviceFlags {
  std::string device = "cpu";
  bool tf32 = false;
  bool cuda_graph = true;
  bool nondeterministic = false;
  bool augment = false;
  CLI::Option* augment_flag = nullptr;  // given: overrides the preset's augmentation
};

void add_common(CLI::App* cmd, RunConfig& cfg, std::string& preset, DeviceFlags& dev) {
  cmd->add_option("--dataset", cfg.dataset, "fashion-mnist, mnist, cifar10, cifar100, svhn, tiny-imagenet or synthetic")
      ->capture_default_str();
  cmd->add_option("--data-dir", cfg.data_dir, "directory holding the dataset's official files (default: its usual place)");
  cmd->add_option("--preset", preset, "model preset: tiny or paper")
      ->capture_default_str()
      ->check(CLI::IsMember(agilenn::models::preset_names()));
  cmd->add_option("--epochs", cfg.epochs, "epochs (the cosine schedule spans them all)")->capture_default_str();
  cmd->add_option("--batch-size", cfg.batch, "per-step batch (of each rank, under mpirun)")->capture_default_str();
  cmd->add_flag("--sync-bn", cfg.sync_bn,
                "under mpirun: the model's batch norms take the statistics of the global batch (all ranks') "
                "instead of their rank's share");
  cmd->add_option_function<double>(
         "--bucket-mb", [&cfg](double mb) { cfg.bucket_bytes = static_cast<size_t>(mb * (1 << 20)); },
         "under mpirun: gradients are summed over the ranks in buckets of this many MiB, each started as soon as "
         "the backward has produced it (default 25)")
      ->check(CLI::Range(0.001, 4096.0));
  cmd->add_option_function<double>(
         "--memory-budget-mb", [&cfg](double mb) { cfg.memory_budget = static_cast<size_t>(mb * (1 << 20)); },
         "recompute cheap elementwise values (batch-norm and activation outputs) where the backward reads them "
         "instead of keeping them, until the step's intermediates peak at no more than this many MiB or no "
         "recomputation lowers the peak; 0: as low as that goes (default: keep every value)")
      ->check(CLI::Range(0.0, 1.0e7));
  cmd->add_flag_function(
      "--fuse,!--no-fuse", [&cfg](int64_t n) { cfg.fuse = n > 0; },
      "run chains of elementwise ops (batch norm's affine part, activations, their gradients) as one fused "
      "kernel each (default: on with --device cpu; off with cuda until the fused kernel is validated on a GPU)");
  cmd->add_option("--lr", cfg.lr,
                  "initial learning rate (default: the preset's; AgileNN SGDW, tiny 0.125, paper 0.1; "
                  "reference net Adam, tiny 1e-2, paper 1e-3, or the seed's fine-tuning 1e-4 with --init)");
  dev.augment_flag = cmd->add_flag("--augment,!--no-augment", dev.augment,
                                   "augment training images (random flip, pad + random crop, per dataset as the seed); "
                                   "default: the preset's (tiny off, paper on)");
  cmd->add_option("--seed", cfg.seed, "seed of initialisation, shuffling and augmentation")->capture_default_str();
  cmd->add_option("--out", cfg.out, "run directory: checkpoints, metrics.jsonl, TensorBoard events")->capture_default_str();
  cmd->add_flag("--resume", cfg.resume, "continue from <out>/latest.safetensors exactly where it stopped");
  cmd->add_option("--device", dev.device,
                  "cpu, or cuda (the first GPU, or under mpirun the node's GPU of the rank's local rank; needs a "
                  "build with CUDA)")
      ->capture_default_str();
  cmd->add_flag("--tf32", dev.tf32, "--device cuda: TF32 tensor-core math for float32 GEMMs and convolutions (off: full float32)");
  cmd->add_flag("--cudnn-nondeterministic", dev.nondeterministic,
                "--device cuda: let cuDNN use non-deterministic convolution algorithms where faster (each one "
                "chosen is named in the log; off: results repeat bit for bit)");
  cmd->add_flag("--cuda-graph,!--no-cuda-graph", dev.cuda_graph,
                "--device cuda: record each step's kernels once as a CUDA graph and replay it (default on; off "
                "under mpirun with more than one rank)");
  cmd->add_option("--max-steps", cfg.max_steps, "stop after this many steps in total (0: all epochs)");
  cmd->add_option("--train-limit", cfg.train_limit, "use only the first N training samples (0: all)");
  cmd->add_option("--test-limit", cfg.test_limit, "evaluate on the first N test samples (0: all)");
  cmd->add_option("--eval-bn-batches", cfg.eval_bn_batches,
                  "recompute the batch-norm statistics over this many training batches before each evaluation "
                  "(0: evaluate with the moving averages, as the seed; default: the preset's, tiny 32, paper 0)");
}

// The backend `dev` names, set up with its options; throws naming the flag and the reason
// when it cannot be had.
agilenn::Backend& open_device(const DeviceFlags& dev, std::ostream& log) {
  std::string description;
  try {
    agilenn::Backend& b = agilenn::open_backend(dev.device, {dev.tf32, dev.nondeterministic}, &description);
    log << "device: " << description << std::endl;
    return b;
  } catch (const agilenn::Error& e) {
    AGILENN_THROW("--device " << dev.device << (dev.tf32 ? " --tf32" : "")
                              << (dev.nondeterministic ? " --cudnn-nondeterministic" : "") << ": " << e.what());
  }
}

void report(const agilenn::train::RunSummary& s, bool agilenn, bool skewness) {
  if (agilenn::dist::world().rank() != 0) return;
  std::cout << "final: steps " << s.steps << "  test accuracy " << s.test_accuracy << "  best " << s.best_accuracy;
  if (skewness) std::cout << "  skewness " << s.test_skewness;
  if (agilenn)
    std::cout << "  remote codes " << s.bits_per_image << " bits/image (" << s.entropy_bits_per_image
              << " at their entropy)";
  std::cout << std::endl;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"agilenn-train: train AgileNN models (Huang & Gao, MobiCom 2022) on the CPU or a GPU"};
  app.require_subcommand(1);

  RunConfig ref_cfg, cfg;
  ref_cfg.mode = agilenn::train::RunMode::reference;
  std::string ref_preset = "tiny", preset = "tiny", ig_rule = "trapezoid";
  DeviceFlags ref_device, device;

  CLI::App* reference = app.add_subcommand("reference", "train the reference net (with its stem) on images");
  add_common(reference, ref_cfg, ref_preset, ref_device);

  reference->add_option("--input-size", ref_cfg.preset.input_size,
                        "images are resized to this square size (default: the preset's, tiny 28, paper 96; the "
                        "seed fine-tunes pretrained weights at 224)");
  reference->add_option("--init", ref_cfg.init,
                        "start from this reference-net checkpoint (e.g. from import-reference) instead of a fresh "
                        "initialisation");
  reference->add_option("--normalization", ref_cfg.normalization,
                        "input normalisation: dataset (its mean and std), signed (2x - 1, Keras weights) or imagenet "
                        "(torchvision weights); default: the --init checkpoint's, else dataset");

  agilenn::train::ImportConfig import_cfg;
  std::string import_format;
  CLI::App* import = app.add_subcommand(
      "import-reference", "turn pretrained EfficientNetV2-S weights (safetensors) into a reference-net checkpoint");
  import->add_option("weights", import_cfg.weights,
                     "safetensors file: a torchvision efficientnet_v2_s state dict, or the Keras application's "
                     "weights by name")
      ->required();
  import->add_option("--format", import_format, "torchvision or keras")
      ->required()
      ->check(CLI::IsMember({"torchvision", "keras"}));
  import->add_option("--dataset", import_cfg.dataset, "the dataset to fine-tune on: its classes size the classifier")
      ->capture_default_str();
  import->add_option("--preset", import_cfg.preset, "model preset whose reference net the weights fill")
      ->capture_default_str()
      ->check(CLI::IsMember(agilenn::models::preset_names()));
  import->add_flag("--keep-classifier", import_cfg.keep_classifier,
                   "keep the file's classifier (its classes must be the dataset's); default: a new one");
  import->add_option("--seed", import_cfg.seed, "seed of the new classifier's initialisation")->capture_default_str();
  import->add_option("--out", import_cfg.out, "the checkpoint to write")->required();

  CLI::App* train = app.add_subcommand("train", "train AgileNN with a frozen, pretrained reference net");
  add_common(train, cfg, preset, device);
  train->add_option("--reference", cfg.reference, "checkpoint of the reference net (from `agilenn-train reference`)");
  train->add_option("--ig-steps", cfg.ig.steps, "integrated-gradients points m")->capture_default_str();
  train->add_option("--ig-rule", ig_rule, "left, right, middle, trapezoid or gauss-legendre")
      ->capture_default_str()
      ->check(CLI::IsMember(agilenn::xai::ig_rule_names()));
  // Given, these override the fields of the preset --preset picks.
  std::optional<double> rho, lambda, split_ratio;
  std::optional<int64_t> centroids;
  train->add_option("--rho", rho, "target skewness ρ (default: the preset's)");
  train->add_option("--lambda,--klambda", lambda, "weight λ of the classification loss (default: the preset's)");
  train->add_option("--split-ratio,--split_ratio", split_ratio,
                    "share of feature channels kept on the device (default: the preset's)");
  train->add_option("--num-centroids,--num_centroids", centroids, "quantizer centroids (default: the preset's)");
  train->add_option("--channel-remapping,--channel_remapping", cfg.channel_remapping,
                    "none, global_importance or topk_appearance: move the channels the reference net finds most "
                    "important to the local side before training (default: the preset's, tiny global_importance, "
                    "paper none)");
  bool plain = false;
  train->add_flag("--plain", plain,
                  "train the same model without the attribution losses (loss = cross-entropy, no IG, no --reference): "
                  "the baseline for AgileNN's accuracy");
  train->add_option("--figure-samples", cfg.figure_samples,
                    "test images pictured in TensorBoard at each evaluation: the image and its importance over the "
                    "local and the remote channels (0: none)")
      ->capture_default_str();

  std::string checkpoint;
  agilenn::train::EvaluateOptions eval;
  CLI::App* evaluate = app.add_subcommand("evaluate", "evaluate a checkpoint on the test split");
  evaluate->add_option("checkpoint", checkpoint, "a .safetensors checkpoint written by agilenn-train")->required();
  evaluate->add_option("--data-dir", eval.data_dir, "directory holding the dataset's official files");
  evaluate->add_option("--batch-size", eval.batch, "evaluation batch")->capture_default_str();
  evaluate->add_option("--figures", eval.figures_dir,
                       "write PNG figures here: test images with their importance over the local and remote "
                       "channels, and the mean importance per channel (AgileNN checkpoints)");
  evaluate->add_option("--figure-samples", eval.figure_samples, "with --figures: test images pictured")
      ->capture_default_str();
  DeviceFlags eval_device;
  evaluate->add_option("--device", eval_device.device, "cpu, or cuda (the first GPU; needs a build with CUDA)")
      ->capture_default_str();

  CLI11_PARSE(app, argc, argv);
  // Leaves the MPI job at every normal exit (a failing rank aborts the job instead).
  struct LeaveJob {
    ~LeaveJob() { agilenn::dist::finalize(); }
  } leave_job;
  try {
    // Under mpirun or srun: join the job (a rank per process; rank 0 logs and writes).
    agilenn::dist::init();
    if (*import) {
      import_cfg.format = agilenn::models::parse_weights_format(import_format);
      agilenn::train::import_reference(import_cfg, std::cout);
      return 0;
    }
    // Rank 0 alone speaks under mpirun.
    std::ostream& log = agilenn::dist::rank0_only(std::cout);
    if (*evaluate) {
      agilenn::train::evaluate_checkpoint(checkpoint, eval, open_device(eval_device, log), std::cout);
      return 0;
    }
    const bool agilenn = static_cast<bool>(*train);
    RunConfig& c = agilenn ? cfg : ref_cfg;
    const DeviceFlags& dev = agilenn ? device : ref_device;
    const int64_t input_size = c.preset.input_size;
    c.preset = agilenn::models::preset(agilenn ? preset : ref_preset);
    if (!agilenn && reference->count("--input-size") > 0) c.preset.input_size = input_size;
    if (dev.augment_flag->count() > 0) c.augment = dev.augment ? 1 : 0;
    if (agilenn) {
      c.attribution = !plain;
      c.ig.rule = agilenn::xai::parse_ig_rule(ig_rule);
      if (split_ratio) c.preset.split_ratio = *split_ratio;
      if (centroids) c.preset.num_centroids = *centroids;
      if (rho) c.preset.rho = *rho;
      if (lambda) c.preset.lambda = *lambda;
    }
    // A mistake in the flags is reported before the device opens or data loads.
    agilenn::train::validate(c);
    agilenn::Backend& backend = open_device(dev, log);
    c.graph_replay = dev.cuda_graph && backend.device() != agilenn::Device::cpu && agilenn::dist::world().size() == 1;
    report(agilenn::train::run_training(c, backend, std::cout), agilenn, agilenn && c.attribution);
  } catch (const std::exception& e) {
    std::cerr << "agilenn-train: error: " << agilenn::dist::rank_prefix() << e.what() << std::endl;
    // The other ranks may be waiting for this one in a collective: end them all.
    if (agilenn::dist::world().size() > 1) agilenn::dist::world().abort(1);
    return 1;
  }
  return 0;
}
