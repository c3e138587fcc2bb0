// Pretrained EfficientNetV2-S weights as the reference net (engine/models/import_reference.h):
// a torchvision net with random weights, run by PyTorch (tests/make_efficientnet_weights.py),
// against the engine's forward on the same inputs, for both formats, in float32 and float64;
// the errors a wrong file gets; and the command line from import to AgileNN training.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "engine/io/checkpoint.h"
#include "engine/models/agilenn.h"
#include "engine/models/import_reference.h"
#include "engine/runtime/executor.h"
#include "tests/test_util.h"

namespace agilenn {
namespace {

namespace fs = std::filesystem;
using models::WeightsFormat;
using testing::error_of;
using ::testing::HasSubstr;

constexpr int64_t kClasses = 10;  // the script's net

class ImportReference : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // Made once per build tree (each test runs in its own process) and again when the
    // script changes; the tests that write files write them to a scratch directory.
    const fs::path made(AGILENN_TEST_DATA_DIR "/efficientnet-weights");
    const fs::path script(AGILENN_TESTS_DIR "/make_efficientnet_weights.py");
    if (!fs::exists(made / "cases.safetensors") ||
        fs::last_write_time(made / "cases.safetensors") < fs::last_write_time(script)) {
      if (!testing::have_python("torch, torchvision, safetensors")) {
        skip_ = "python3 lacks torch, torchvision or safetensors (tools/setup.sh --tests installs them)";
        return;
      }
      fs::create_directories(made);
      const std::string cmd = "python3 " + script.string() + " " + made.string();
      ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    }
    made_ = made;
    dir_ = fs::temp_directory_path() / ("agilenn-import-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    cases_ = io::read_safetensors((made_ / "cases.safetensors").string()).tensors;
  }
  static void TearDownTestSuite() {
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
  }

  static std::string weights(WeightsFormat f) {
    return (made_ / (std::string(models::weights_format_name(f)) + ".safetensors")).string();
  }
  static models::AgileNNPreset paper(WeightsFormat f) {
    models::AgileNNPreset p = models::preset("paper");
    p.reference.padding = models::weights_padding(f);
    return p;
  }
  static nn::TensorMap imported(WeightsFormat f, bool keep_classifier = true) {
    return models::import_reference_weights(weights(f), paper(f), {f, kClasses, keep_classifier, 1}).values;
  }

  // The engine's eval-mode logits: the full net on images, or the stem-less body on features.
  static Tensor logits(const nn::TensorMap& values, WeightsFormat f, const Tensor& input, bool body, DType dtype) {
    Graph g;
    nn::ParamSet params;
    const nn::Scope root(g, params, false, dtype);
    const Value x = ops::leaf(g, "input", input.shape(), dtype);
    const models::AgileNNPreset p = paper(f);
    const Value y = body ? models::reference_body(root.child("ref"), x, p, kClasses)
                         : models::reference_net(root.child("ref"), x, p, kClasses);
    Feeds feeds{{"input", input.to(dtype)}};
    for (const nn::ParamInfo& info : params.all()) feeds[info.name] = values.at(info.name).to(dtype);
    return evaluate(g, {y.id()}, feeds, cpu_backend())[0];
  }

  // max |a − b| / max |b|
  static double relative_error(const Tensor& a, const Tensor& b) {
    EXPECT_EQ(a.shape(), b.shape());
    double diff = 0, scale = 0;
    const std::vector<double> x = a.to_vector(), y = b.to_vector();
    for (size_t i = 0; i < x.size(); ++i) {
      diff = std::max(diff, std::abs(x[i] - y[i]));
      scale = std::max(scale, std::abs(y[i]));
    }
    return diff / scale;
  }

  // The bounds: 1e-4 relative in float32 (a few hundred ulps after ~200 layers summed
  // in another order than PyTorch's), 1e-10 in float64 (measured: ~1e-15).
  static void expect_matches(const nn::TensorMap& values, WeightsFormat f, bool body, const std::string& expected) {
    const Tensor& input = cases_.at(body ? "features" : "images");
    const double e32 = relative_error(logits(values, f, input, body, DType::f32), cases_.at(expected + "_f32"));
    const double e64 = relative_error(logits(values, f, input, body, DType::f64), cases_.at(expected + "_f64"));
    EXPECT_LE(e32, 1e-4) << expected;
    EXPECT_LE(e64, 1e-10) << expected;
    std::cout << expected << ": relative error float32 " << e32 << ", float64 " << e64 << std::endl;
  }

  static fs::path made_, dir_;
  static std::string skip_;
  static nn::TensorMap cases_;
};

fs::path ImportReference::made_;
fs::path ImportReference::dir_;
std::string ImportReference::skip_;
nn::TensorMap ImportReference::cases_;

TEST_F(ImportReference, TheCasesDependOnTheirInputs) {
  // Two inputs, logits far apart: an import that lost the input's path would not pass.
  for (const char* name : {"torchvision_logits_f64", "torchvision_body_logits_f64", "keras_logits_f64"}) {
    const std::vector<double> v = cases_.at(name).to_vector();
    double apart = 0;
    for (int64_t c = 0; c < kClasses; ++c) apart = std::max(apart, std::abs(v[c] - v[kClasses + c]));
    EXPECT_GT(apart, 1.0) << name;
  }
}

TEST_F(ImportReference, TorchvisionFullNetMatchesPyTorch) {
  expect_matches(imported(WeightsFormat::torchvision), WeightsFormat::torchvision, false, "torchvision_logits");
}

TEST_F(ImportReference, TorchvisionStemlessBodyMatchesPyTorch) {
  expect_matches(imported(WeightsFormat::torchvision), WeightsFormat::torchvision, true, "torchvision_body_logits");
}

TEST_F(ImportReference, KerasNamesAndSamePaddingMatchTheSameNet) {
  // The same weights under Keras' names and layouts, run with TensorFlow's padding.
  expect_matches(imported(WeightsFormat::keras), WeightsFormat::keras, false, "keras_logits");
}

TEST_F(ImportReference, ANewClassifierReplacesTheFilesAndNothingElse) {
  const models::ImportedWeights kept = models::import_reference_weights(
      weights(WeightsFormat::torchvision), paper(WeightsFormat::torchvision), {WeightsFormat::torchvision, 100, false, 7});
  EXPECT_EQ(kept.replaced, (std::vector<std::string>{"classifier.1.bias [10]", "classifier.1.weight [10,1280]"}));
  EXPECT_EQ(kept.values.at("ref.classifier.weight").shape(), (Shape{1280, 100}));
  const nn::TensorMap full = imported(WeightsFormat::torchvision);
  for (const auto& [name, t] : full) {
    if (!name.starts_with("ref.classifier")) {
      EXPECT_EQ(t.to_vector(), kept.values.at(name).to_vector()) << name;
    }
  }
}

TEST_F(ImportReference, AWrongFileIsRefusedNamingTheTensor) {
  const io::SafetensorsFile good = io::read_safetensors(weights(WeightsFormat::torchvision));
  const models::AgileNNPreset p = paper(WeightsFormat::torchvision);
  auto import_edited = [&](const std::function<void(nn::TensorMap&)>& edit) {
    io::Checkpoint edited{good.tensors, {}};
    edit(edited.tensors);
    const std::string path = (dir_ / "edited.safetensors").string();
    io::save_checkpoint(path, edited);
    return error_of([&] { models::import_reference_weights(path, p, {WeightsFormat::torchvision, kClasses, true, 1}); });
  };
  EXPECT_THAT(import_edited([](nn::TensorMap& t) { t.erase("features.4.0.block.2.fc1.weight"); }),
              AllOf(HasSubstr("has no tensor 'features.4.0.block.2.fc1.weight'"),
                    HasSubstr("ref.stage3.block0.se.reduce.weight")));
  EXPECT_THAT(import_edited([](nn::TensorMap& t) {
                t["features.1.0.block.0.0.weight"] = Tensor::zeros({24, 24, 1, 3}, DType::f32);
              }),
              AllOf(HasSubstr("'features.1.0.block.0.0.weight' is [24,24,1,3]"), HasSubstr("needs [3,3,24,24]")));
  EXPECT_THAT(import_edited([](nn::TensorMap& t) { t["features.8.0.weight"] = Tensor::zeros({4}, DType::f32); }),
              AllOf(HasSubstr("'features.8.0.weight'"), HasSubstr("maps to nothing")));
  EXPECT_THAT(error_of([&] {
                models::import_reference_weights(weights(WeightsFormat::torchvision), p,
                                                 {WeightsFormat::torchvision, 100, true, 1});
              }),
              AllOf(HasSubstr("classifier.1.weight"), HasSubstr("needs [1280,100]")));
  EXPECT_THAT(error_of([&] {
                models::import_reference_weights(weights(WeightsFormat::torchvision), p,
                                                 {WeightsFormat::keras, kClasses, true, 1});
              }),
              HasSubstr("has no tensor 'stem_conv/kernel'"));
  const std::string truncated = (dir_ / "truncated.safetensors").string();
  fs::copy_file(weights(WeightsFormat::torchvision), truncated, fs::copy_options::overwrite_existing);
  fs::resize_file(truncated, fs::file_size(truncated) / 2);
  EXPECT_THAT(error_of([&] {
                models::import_reference_weights(truncated, p, {WeightsFormat::torchvision, kClasses, true, 1});
              }),
              AllOf(HasSubstr(truncated), HasSubstr("truncated")));
}

int run_cli(const std::string& args, std::string& output) {
  return testing::run_command(AGILENN_TRAIN_BINARY " " + args, &output);
}

TEST_F(ImportReference, FromImportThroughFineTuningToAgileNN) {
  // The seed's two stages on synthetic data, one step each: import, fine-tune with --init
  // (Adam's first step moves each weight by at most its learning rate, the seed's 1e-4 by
  // default from --init), AgileNN on top.
  const std::string ckpt = (dir_ / "imported.safetensors").string(), ref = (dir_ / "ref").string(),
                    agile = (dir_ / "agilenn").string();
  std::string out;
  ASSERT_EQ(run_cli("import-reference " + weights(WeightsFormat::torchvision) +
                        " --format torchvision --dataset synthetic --out " + ckpt,
                    out),
            0)
      << out;
  EXPECT_THAT(out, HasSubstr("replaced by a new 10-class classifier: classifier.1.weight [10,1280]"));
  EXPECT_THAT(out, HasSubstr("symmetric padding, inputs normalised as 'imagenet'"));
  const auto imported_at = fs::last_write_time(ckpt);
  EXPECT_NE(run_cli("import-reference " + weights(WeightsFormat::keras) + " --format keras --out " + ckpt, out), 0);
  EXPECT_THAT(out, HasSubstr("--out " + ckpt + ": exists"));
  EXPECT_EQ(fs::last_write_time(ckpt), imported_at);
  ASSERT_EQ(run_cli("reference --preset paper --init " + ckpt + " --input-size 32 --dataset synthetic --batch-size 2 "
                        "--epochs 1 --max-steps 1 --test-limit 8 --out " + ref,
                    out),
            0)
      << out;
  EXPECT_THAT(out, HasSubstr("starting from " + ckpt));
  const io::Checkpoint before = io::load_checkpoint(ckpt);
  const io::Checkpoint after = io::load_checkpoint(ref + "/latest.safetensors");
  const nlohmann::json& config = after.metadata.at("config");
  EXPECT_EQ(config.at("init"), ckpt);
  EXPECT_EQ(config.at("normalization"), "imagenet");
  EXPECT_EQ(config.at("preset").at("input_size"), 32);
  EXPECT_EQ(config.at("preset").at("reference_padding"), "symmetric");
  double moved = 0;
  for (const auto& [name, t] : before.tensors) {
    if (name.find("moving_") != std::string::npos) continue;  // batch-norm statistics follow the batch
    const std::vector<double> a = t.to_vector(), b = after.tensors.at(name).to_vector();
    for (size_t i = 0; i < a.size(); ++i) moved = std::max(moved, std::abs(a[i] - b[i]));
  }
  EXPECT_GT(moved, 0.0);
  EXPECT_LE(moved, 1e-4 * 1.001);

  ASSERT_EQ(run_cli("train --preset paper --reference " + ref + "/latest.safetensors --dataset synthetic "
                        "--batch-size 2 --epochs 1 --max-steps 1 --test-limit 8 --figure-samples 0 --out " + agile,
                    out),
            0)
      << out;
  const io::Checkpoint agilenn = io::load_checkpoint(agile + "/latest.safetensors");
  EXPECT_EQ(agilenn.metadata.at("config").at("preset").at("reference_padding"), "symmetric");
  EXPECT_EQ(agilenn.tensors.at("ref.stage3.block0.se.reduce.weight").to_vector(),
            after.tensors.at("ref.stage3.block0.se.reduce.weight").to_vector());
}

}  // namespace
}  // namespace agilenn
