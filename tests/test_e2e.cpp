// Small end-to-end training runs on the CPU with stated thresholds.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "engine/core/error.h"
#include "engine/data/synthetic.h"
#include "engine/train/run.h"
#include "engine/train/trainer.h"
#include "tests/agilenn_trainers.h"

namespace agilenn {
namespace {

constexpr int64_t kClasses = 10, kBatch = 32;

// Pretrains the tiny reference net (with its stem) on the synthetic images; returns its values.
nn::TensorMap pretrain_reference(const data::SyntheticDataset& ds, int steps) {
  auto step = train::build_reference_step(models::preset("tiny"), kClasses, kBatch, true);
  nn::TensorMap init = step->params.initialise(7, DType::f32);
  train::Trainer t(std::move(step), init, std::make_unique<train::Adam>(train::CosineSchedule{3e-3, steps, 0.01}), cpu_backend());
  for (int s = 0; s < steps; ++s) {
    const data::Batch b = ds.batch(s * kBatch, kBatch);
    t.step(b.images, b.labels);
  }
  return t.values();
}

TEST(EndToEnd, TinyPresetRaisesSkewnessToRhoWhileAccuracyRises) {
  const int64_t side = models::preset("tiny").input_size;
  const data::SyntheticDataset ds(kClasses, side, side, 3, 4096, 3, 0.3);
  const nn::TensorMap reference = pretrain_reference(ds, 100);

  train::AgileNNStepOptions opt;
  opt.classes = kClasses;
  opt.batch = kBatch;
  auto step = train::build_agilenn_step(opt);
  nn::TensorMap values = step->params.initialise(11, DType::f32);
  for (const auto& [name, t] : reference)
    if (values.count(name)) values[name] = t;  // the frozen body of the reference net
  const Tensor table = train::compute_zero_point_table(models::preset("tiny"), kClasses, values, DType::f32, cpu_backend());
  const int steps = 400, window = 25;
  train::Trainer trainer(std::move(step), values, std::make_unique<train::SGDW>(train::CosineSchedule{0.1, steps, 0}), cpu_backend());
  trainer.set_input("ig.zero_point_grads", table);

  double first_acc = 0, first_skew = 0, last_acc = 0, last_skew = 0;
  for (int s = 0; s < steps; ++s) {
    const data::Batch b = ds.batch(100000 + s * kBatch, kBatch);
    const train::StepResult r = trainer.step(b.images, b.labels);
    const double acc = r.metrics.at("correct") / kBatch, skew = r.metrics.at("skewness");
    if (s < window) first_acc += acc / window, first_skew += skew / window;
    if (s >= steps - window) last_acc += acc / window, last_skew += skew / window;
  }
  RecordProperty("first_skewness", std::to_string(first_skew));
  RecordProperty("last_skewness", std::to_string(last_skew));
  // ρ = 0.8: the attribution losses must pull the local share of importance up to within
  // 0.05 of ρ from ~0.2 (2 of 10 channels) while the classifier learns the 10 classes.
  // Measured over initialisation seeds 11-14 × OpenBLAS kernel sets Haswell (an AMD Zen's),
  // Sandybridge, SkylakeX and this CPU's own choice, 16 runs (2026-12-01): first window's
  // accuracy 0.67-0.81 and skewness 0.27-0.33, last window's accuracy 0.999-1.0 and
  // skewness 0.81-0.83; the rise was 0.19 at its smallest.
  EXPECT_LT(first_skew, 0.4);
  EXPECT_GE(last_skew, 0.75);
  EXPECT_GT(last_acc, 0.9);
  EXPECT_GT(last_acc, first_acc + 0.1);
}

TEST(EndToEnd, PaperPresetBuildsPlansAndRunsOneCpuStep) {
  train::AgileNNStepOptions opt;
  opt.preset = models::preset("paper");
  opt.classes = 100;
  opt.batch = 64;
  auto big = train::build_agilenn_step(opt);
  const int64_t params = big->params.count_trainable_elements();
  const Plan plan = compile(big->graph, train::step_outputs(*big));
  std::printf("paper preset: %lld trainable parameters; batch 64 plan: %.1f MiB peak of %.1f MiB intermediates\n",
              static_cast<long long>(params), static_cast<double>(plan.memory.arena_bytes) / (1 << 20),
              static_cast<double>(plan.memory.total_bytes) / (1 << 20));
  // FE + LP + a MobileNetV2 remote predictor (1280-wide head, 100 classes): ~2.35M.
  EXPECT_GT(params, 2'000'000);
  EXPECT_LT(params, 2'600'000);
  EXPECT_LT(plan.memory.arena_bytes, plan.memory.total_bytes / 2);

  opt.batch = 2;
  auto small = train::build_agilenn_step(opt);
  nn::TensorMap values = small->params.initialise(5, DType::f32);
  const Tensor table = train::compute_zero_point_table(models::preset("paper"), opt.classes, values, DType::f32, cpu_backend());
  EXPECT_EQ(table.shape(), (Shape{100, 32, 32, 24}));
  const std::vector<double> fe_before = values.at("fe.sep1.depthwise.weight").to_vector();
  const std::vector<double> ref_before = values.at("ref.head.weight").to_vector();
  train::Trainer trainer(std::move(small), values, std::make_unique<train::SGDW>(train::CosineSchedule{0.1, 10, 0}), cpu_backend());
  trainer.set_input("ig.zero_point_grads", table);
  const data::SyntheticDataset ds(100, 96, 96, 3, 16, 1);
  const data::Batch b = ds.batch(0, 2);
  const train::StepResult r = trainer.step(b.images, b.labels);
  EXPECT_TRUE(std::isfinite(r.loss));
  EXPECT_GT(r.metrics.at("skewness"), 0.0);
  EXPECT_LT(r.metrics.at("skewness"), 1.0);
  // The feature extractor moved; the frozen reference net did not.
  EXPECT_NE(trainer.values().at("fe.sep1.depthwise.weight").to_vector(), fe_before);
  EXPECT_EQ(trainer.values().at("ref.head.weight").to_vector(), ref_before);
}

TEST(EndToEnd, NonFiniteLossStopsTheStepAndKeepsParameters) {
  train::AgileNNStepOptions opt;
  opt.classes = 4;
  opt.batch = 4;
  auto step = train::build_agilenn_step(opt);
  nn::TensorMap values = step->params.initialise(3, DType::f32);
  const Tensor table = train::compute_zero_point_table(models::preset("tiny"), 4, values, DType::f32, cpu_backend());
  train::Trainer trainer(std::move(step), values, std::make_unique<train::SGDW>(train::CosineSchedule{0.1, 10, 0}), cpu_backend());
  trainer.set_input("ig.zero_point_grads", table);
  const int64_t side = models::preset("tiny").input_size;
  Tensor images = Tensor::zeros({4, side, side, 3}, DType::f32);
  images.set_item(5, NAN);
  const std::vector<double> before = trainer.values().at("fe.sep1.depthwise.weight").to_vector();
  try {
    trainer.step(images, Tensor::from_vector({4}, {0, 1, 2, 3}, DType::i32));
    FAIL() << "a NaN input must stop the step";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("step 0"));
  }
  EXPECT_EQ(trainer.values().at("fe.sep1.depthwise.weight").to_vector(), before);
  // The trainer stays stopped: a good batch now is refused, not trained on.
  images.set_item(5, 0.0);
  try {
    trainer.step(images, Tensor::from_vector({4}, {0, 1, 2, 3}, DType::i32));
    FAIL() << "a stopped trainer must refuse further steps";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("stopped"));
  }
  EXPECT_EQ(trainer.values().at("fe.sep1.depthwise.weight").to_vector(), before);
}

// Steps launched without waiting (as agilenn-train runs them): a NaN batch at step 2 of 4
// stops the updates from step 2 on, and collect() names step 2; parameters and state are
// those after steps 0 and 1, exactly.
TEST(EndToEnd, AStepRefusedOnTheDeviceStopsEveryLaterUpdateAndIsNamedAtCollection) {
  train::AgileNNStepOptions opt;
  opt.classes = 4;
  opt.batch = 4;
  const testing::AgileNNTrainers setup(opt, 3);
  auto trainer = [&] { return setup.make(cpu_backend(), 10); };
  const int64_t side = opt.preset.input_size;
  const data::SyntheticDataset ds(4, side, side, 3, 16, 2);
  std::vector<data::Batch> batches;
  for (int s = 0; s < 4; ++s) batches.push_back(ds.batch(4 * s, 4));
  batches[2].images = batches[2].images.clone();
  batches[2].images.set_item(7, NAN);
  auto reference = trainer();
  reference->step(batches[0].images, batches[0].labels);
  reference->step(batches[1].images, batches[1].labels);
  auto t = trainer();
  for (const data::Batch& b : batches) t->enqueue(b.images, b.labels);
  try {
    t->collect();
    FAIL() << "the NaN step must be reported";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("step 2: loss is nan"));
  }
  const nn::TensorMap want = reference->host_values(), got = t->host_values();
  for (const auto& [name, v] : want) EXPECT_EQ(got.at(name).to_vector(), v.to_vector()) << name;
  EXPECT_EQ(t->host_slots().at("fe.sep1.depthwise.weight/momentum").to_vector(),
            reference->host_slots().at("fe.sep1.depthwise.weight/momentum").to_vector());
}

}  // namespace
}  // namespace agilenn

namespace agilenn {
namespace {

// ---- the README's main job in miniature, on real Fashion-MNIST (Debian's
// dataset-fashion-mnist, installed by tools/setup.sh): the tiny reference net, then
// AgileNN with it frozen, on the first 8192 training and 1000 test images.

const std::string kFmnistDir = "/usr/share/datasets/fashion-mnist";

// The seed of a subset run: 1, or AGILENN_E2E_SEED (tools/measure-e2e-spread.sh sets it to
// measure the spread over seeds; tests and CI leave it unset).
uint64_t subset_seed(uint64_t fallback) {
  const char* s = std::getenv("AGILENN_E2E_SEED");
  return s && *s ? std::stoull(s) : fallback;
}

struct EpochAccuracy {
  double train = 0;  // mean accuracy of the epoch's training batches (train-mode forward)
  double test = 0;   // test accuracy evaluated after the epoch
};

// Per epoch, from a run's metrics.jsonl.
std::vector<EpochAccuracy> epoch_accuracies(const std::filesystem::path& metrics) {
  std::ifstream in(metrics);
  std::map<int64_t, std::pair<double, int64_t>> train;
  std::map<int64_t, double> test;
  for (std::string line; std::getline(in, line);) {
    const nlohmann::json j = nlohmann::json::parse(line);
    const int64_t epoch = j.at("epoch").get<int64_t>();
    if (j.contains("test_accuracy")) {
      test[epoch] = j.at("test_accuracy").get<double>();
    } else {
      train[epoch].first += j.at("accuracy").get<double>();
      train[epoch].second += 1;
    }
  }
  std::vector<EpochAccuracy> out;
  for (const auto& [epoch, t] : test)
    out.push_back({train.at(epoch).first / static_cast<double>(train.at(epoch).second), t});
  return out;
}

struct SubsetRun {
  train::RunSummary reference, agilenn;
  std::vector<EpochAccuracy> reference_epochs, agilenn_epochs;
  std::string log;
};

SubsetRun fashion_mnist_subset(const std::string& tag, int64_t reference_epochs, int64_t agilenn_epochs,
                               uint64_t seed) {
  const std::filesystem::path out = std::filesystem::temp_directory_path() /
                                    ("agilenn-fmnist-" + tag + "-" + std::to_string(::getpid()));
  std::filesystem::remove_all(out);
  std::ostringstream log;
  train::RunConfig ref;
  ref.mode = train::RunMode::reference;
  ref.dataset = "fashion-mnist";
  ref.out = (out / "ref").string();
  ref.epochs = reference_epochs;
  ref.batch = 64;
  ref.seed = seed;
  ref.train_limit = 8192;
  ref.test_limit = 1000;
  SubsetRun r;
  r.reference = train::run_training(ref, cpu_backend(), log);

  train::RunConfig agile = ref;
  agile.mode = train::RunMode::agilenn;
  agile.out = (out / "agilenn").string();
  agile.epochs = agilenn_epochs;
  agile.reference = ref.out + "/best.safetensors";
  r.agilenn = train::run_training(agile, cpu_backend(), log);
  r.reference_epochs = epoch_accuracies(std::filesystem::path(ref.out) / "metrics.jsonl");
  r.agilenn_epochs = epoch_accuracies(std::filesystem::path(agile.out) / "metrics.jsonl");
  r.log = log.str();
  std::filesystem::remove_all(out);
  return r;
}

double min_test_to_train(const std::vector<EpochAccuracy>& epochs) {
  double m = INFINITY;
  for (const EpochAccuracy& e : epochs) m = std::min(m, e.test / e.train);
  return m;
}

// Thresholds from the spread measured by tools/measure-e2e-spread.sh for this tiny preset
// (bench/results/e2e-spread-2026-11-30-e8e6e84.md): seeds 1-5 × OpenBLAS kernel sets
// Haswell, SkylakeX and Sandybridge (an AMD Zen runs the Haswell kernels), one engine thread,
// 15 runs. The training map is chaotic, so another CPU's kernels (or another thread count,
// which splits the reductions differently) give another trajectory, spread like another
// seed. Earlier presets' spreads (e2e-spread-2026-11-30-*.md) had standard deviations up to
// 0.012 (accuracy) and 0.05 (skewness, at λ = 0.8).
//   test accuracy: min 0.834, mean 0.849, std 0.008 -> threshold 0.80, 4.0 std below the min
//     and 5.8 below the mean (chance is 0.10; without learning or with a broken step it stays
//     far below);
//   test skewness: min 0.771, mean 0.798, std 0.013 -> threshold 0.70, 5.7 std below the min
//     and 7.8 below the mean (the attribution losses' work: 2 of 10 channels is 0.2);
//   per epoch, test / training-batch accuracy: min 0.982, std 0.009 -> the 0.8.
// Re-measured after batch norm's per-channel scale changed its rounding
// (e2e-spread-2026-12-01-81fffd7.md, the four kernel sets, two threads, 20 runs): accuracy
// min 0.836, mean 0.850, std 0.005; skewness min 0.750, mean 0.793, std 0.017 (5.5 std
// above 0.70); test / train min 0.975. The thresholds stand.
constexpr double kFmnistMinAccuracy = 0.80, kFmnistMinSkewness = 0.70, kFmnistMinTestToTrain = 0.8;

// The README's main job in miniature. A broken step (no attribution losses, no learning, a
// wrong gradient through the IG) misses the accuracy and skewness thresholds by far.
//
// No collapse at evaluation, checked on the same run: after every epoch of both stages the
// test accuracy is at least 0.8 × the mean accuracy of that epoch's training batches.
// Evaluating with the batch norms' moving averages (momentum 0.99) instead of statistics
// recomputed over training batches broke this: after the first AgileNN epoch (128 steps)
// the test accuracy was 0.10 (chance) against 0.43 on the training batches. The first
// epoch of each stage is where it is worst, while the weights still move fast.
TEST(EndToEnd, FashionMnistSubsetTrainsToAccuracyAndSkewnessWithoutCollapse) {
  if (!std::filesystem::exists(kFmnistDir + "/train-images-idx3-ubyte.gz"))
    GTEST_SKIP() << kFmnistDir << " is missing: tools/setup.sh installs dataset-fashion-mnist";
  const uint64_t seed = subset_seed(1);
  const SubsetRun r = fashion_mnist_subset("accuracy", 2, 4, seed);
  std::printf("%s", r.log.c_str());
  double min_train = INFINITY;
  for (const auto* epochs : {&r.reference_epochs, &r.agilenn_epochs})
    for (const EpochAccuracy& e : *epochs) min_train = std::min(min_train, e.train);
  // One line for tools/measure-e2e-spread.sh.
  std::printf("e2e-result seed=%llu reference_accuracy=%.4f accuracy=%.4f skewness=%.4f min_test_to_train=%.4f "
              "min_train=%.4f\n",
              static_cast<unsigned long long>(seed), r.reference.test_accuracy, r.agilenn.test_accuracy,
              r.agilenn.test_skewness, std::min(min_test_to_train(r.reference_epochs), min_test_to_train(r.agilenn_epochs)),
              min_train);
  RecordProperty("accuracy", std::to_string(r.agilenn.test_accuracy));
  RecordProperty("skewness", std::to_string(r.agilenn.test_skewness));
  EXPECT_GT(r.agilenn.test_accuracy, kFmnistMinAccuracy);
  EXPECT_GT(r.agilenn.test_skewness, kFmnistMinSkewness);

  ASSERT_EQ(r.reference_epochs.size(), 2u);
  ASSERT_EQ(r.agilenn_epochs.size(), 4u);
  for (const auto& [stage, epochs] : {std::pair{"reference", r.reference_epochs}, std::pair{"agilenn", r.agilenn_epochs}})
    for (size_t e = 0; e < epochs.size(); ++e)
      EXPECT_GE(epochs[e].test, kFmnistMinTestToTrain * epochs[e].train)
          << stage << " epoch " << e + 1 << ": test accuracy " << epochs[e].test << ", training batches "
          << epochs[e].train;
}

}  // namespace
}  // namespace agilenn
