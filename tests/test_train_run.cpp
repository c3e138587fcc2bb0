// Loader determinism and sharding, checkpoints (format, atomicity, corruption), exact
// resume of a training run, and the command line's error handling.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include "engine/core/error.h"
#include "tests/test_util.h"
#include "engine/data/loader.h"
#include "engine/io/checkpoint.h"
#include "engine/runtime/executor.h"
#include "engine/train/bn_statistics.h"
#include "engine/train/run.h"
#include "engine/train/step.h"

namespace agilenn {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// An empty directory of its own for one test, removed with everything in it afterwards.
using testing::ScratchDir;
using testing::error_of;
using testing::have_python;

// ---- loader

TEST(Loader, BatchesAreAPureFunctionOfSeedEpochAndIndex) {
  const data::ImageDataset ds = data::synthetic_images(10, 96, 28, 3);
  const data::Preprocess pp = data::Preprocess::for_dataset("cifar10", 32, true);
  data::Loader a(ds, 8, pp, 42, true), b(ds, 8, pp, 42, true), c(ds, 8, pp, 43, true);
  const auto x = a.get(1, 3), y = b.next(1, 3), z = c.get(1, 3);
  EXPECT_EQ(x.batch.images.shape(), (Shape{8, 32, 32, 3}));
  EXPECT_EQ(x.batch.images.to_vector(), y.batch.images.to_vector());
  EXPECT_EQ(x.batch.labels.to_vector(), y.batch.labels.to_vector());
  EXPECT_NE(x.batch.images.to_vector(), z.batch.images.to_vector());
  // The prefetched next batch equals the one computed directly.
  EXPECT_EQ(b.next(1, 4).batch.images.to_vector(), a.get(1, 4).batch.images.to_vector());
  // Another epoch visits the samples in another order.
  EXPECT_NE(a.get(2, 3).batch.labels.to_vector(), x.batch.labels.to_vector());
}

TEST(Loader, RanksTogetherSeeTheSingleRankBatch) {
  const data::ImageDataset ds = data::synthetic_images(10, 64, 32, 5);
  const data::Preprocess pp = data::Preprocess::for_dataset("cifar10", 32, true);
  data::Loader whole(ds, 8, pp, 7, true), r0(ds, 4, pp, 7, true, 0, 2), r1(ds, 4, pp, 7, true, 1, 2);
  EXPECT_EQ(whole.batches_per_epoch(), r0.batches_per_epoch());
  const auto w = whole.get(0, 2).batch, a = r0.get(0, 2).batch, b = r1.get(0, 2).batch;
  std::vector<double> joined = a.images.to_vector(), jb = b.images.to_vector();
  joined.insert(joined.end(), jb.begin(), jb.end());
  EXPECT_EQ(joined, w.images.to_vector());
}

TEST(Loader, NormalisesBeforeResizingAndCoversTheTestSet) {
  data::ImageDataset ds{"flat", 4, 4, 1, 2, std::vector<uint8_t>(5 * 16, 255), {0, 1, 0, 1, 1}};
  const data::Preprocess pp = data::Preprocess::for_dataset("fashion-mnist", 8, false);
  data::Loader l(ds, 2, pp, 1, false);
  EXPECT_EQ(l.batches_covering(), 3);
  const auto last = l.get(0, 2);
  EXPECT_EQ(last.valid, 1);
  // A constant image stays constant through the resize: (1 − mean) / std on all 3 channels.
  for (double v : last.batch.images.to_vector()) EXPECT_NEAR(v, (1.0 - 0.2860) / 0.3530, 1e-5);
}

// ---- checkpoints

io::Checkpoint sample_checkpoint() {
  io::Checkpoint ck;
  ck.tensors["a.weight"] = Tensor::from_vector({2, 3}, {1, 2, 3, 4, 5, 6}, DType::f32);
  ck.tensors["b.count"] = Tensor::from_vector({2}, {7, -8}, DType::i32);
  ck.tensors["c.big"] = Tensor::from_vector({3}, {0.1, 0.2, 0.3}, DType::f64);
  ck.metadata = {{"step", 12}, {"note", "hello"}};
  return ck;
}

TEST(Checkpoint, RoundTripsTensorsAndMetadata) {
  const ScratchDir d("ckpt");
  const std::string path = (d / "x.safetensors").string();
  io::save_checkpoint(path, sample_checkpoint());
  const io::Checkpoint back = io::load_checkpoint(path);
  ASSERT_EQ(back.tensors.size(), 3u);
  EXPECT_EQ(back.tensors.at("a.weight").to_vector(), (std::vector<double>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(back.tensors.at("b.count").dtype(), DType::i32);
  EXPECT_EQ(back.tensors.at("c.big").to_vector(), (std::vector<double>{0.1, 0.2, 0.3}));
  EXPECT_EQ(back.metadata.at("step").get<int>(), 12);
  // Nothing but the file itself is left in the directory.
  EXPECT_EQ(std::distance(fs::directory_iterator(d), fs::directory_iterator{}), 1);
}

TEST(Checkpoint, IsReadableByThePythonSafetensorsPackage) {
  if (!have_python("safetensors, numpy"))
    GTEST_SKIP() << "python3 with safetensors and numpy is not installed (tools/setup.sh installs them)";
  const ScratchDir d("ckpt-py");
  const std::string path = (d / "x.safetensors").string();
  io::save_checkpoint(path, sample_checkpoint());
  const std::string cmd = "python3 -c \"from safetensors.numpy import load_file; t = load_file('" + path +
                          "'); assert t['a.weight'].tolist() == [[1,2,3],[4,5,6]]; assert t['b.count'].tolist() == [7,-8]\"";
  EXPECT_EQ(std::system(cmd.c_str()), 0);
}

// The sample checkpoint saved as d/good.safetensors, its bytes, and edited copies of them
// written to d/bad.safetensors and loaded.
class EditedCheckpoint {
 public:
  explicit EditedCheckpoint(const ScratchDir& d)
      : good_((d / "good.safetensors").string()), bad_((d / "bad.safetensors").string()) {
    io::save_checkpoint(good_, sample_checkpoint());
    std::ifstream in(good_, std::ios::binary);
    bytes_.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  const std::string& good() const { return good_; }
  const std::string& bad() const { return bad_; }
  const std::string& bytes() const { return bytes_; }

  // Writes `b` as the bad file.
  void write(const std::string& b) const {
    std::ofstream(bad_, std::ios::binary).write(b.data(), static_cast<std::streamsize>(b.size()));
  }
  // The error of loading `b` as the bad file ("" and a failure when it loads).
  std::string error_loading(const std::string& b) const {
    write(b);
    return error_of([&] { io::load_checkpoint(bad_); });
  }
  // The same, for the good bytes with their first `from` replaced by `to`.
  std::string error_replacing(const std::string& from, const std::string& to) const {
    std::string b = bytes_;
    const size_t at = b.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return error_loading(b.replace(at, from.size(), to));
  }

 private:
  std::string good_, bad_, bytes_;
};

TEST(Checkpoint, TruncatedOrCorruptFilesAreRefusedNamingTheProblem) {
  const ScratchDir d("ckpt-bad");
  const EditedCheckpoint ck(d);
  const std::string& good = ck.good();
  const std::string& bytes = ck.bytes();
  for (size_t cut : {size_t{0}, size_t{4}, size_t{8}, size_t{20}, bytes.size() / 2, bytes.size() - 1})
    EXPECT_THAT(ck.error_loading(bytes.substr(0, cut)), HasSubstr("bad.safetensors")) << "cut at " << cut;
  std::string flipped = bytes;
  flipped[bytes.size() - 3] ^= 0x40;
  EXPECT_THAT(ck.error_loading(flipped), HasSubstr("checksum"));

  nn::ParamSet expected;
  expected.declare({"a.weight", {3, 2}, nn::Init::Zeros()});
  EXPECT_THAT(error_of([&] { io::check_against(io::load_checkpoint(good), expected, good); }),
              HasSubstr("'a.weight' is [2,3], the model needs [3,2]"));
}

// The file checksum covers the header and the metadata too: a flipped digit of the step
// count (which stays valid JSON) or of a shape is caught, naming what is corrupt; a file
// of the older format (data checksum only) still loads.
TEST(Checkpoint, TheChecksumCoversHeaderAndMetadata) {
  const ScratchDir d("ckpt-header");
  const EditedCheckpoint ck(d);
  EXPECT_THAT(ck.error_replacing("\\\"step\\\":12", "\\\"step\\\":13"),
              HasSubstr("the header or the metadata is corrupt"));
  EXPECT_THAT(ck.error_replacing("\"shape\":[2,3]", "\"shape\":[3,2]"), HasSubstr("the header or the metadata is corrupt"));
  // The older format: no file_crc32 (the same length of padding in its place).
  const std::string key = ",\"file_crc32\":\"";
  const size_t at = ck.bytes().find(key);
  ASSERT_NE(at, std::string::npos);
  std::string old = ck.bytes();
  old.replace(at, key.size() + 9, std::string(key.size() + 9, ' '));
  ck.write(old);
  EXPECT_EQ(io::load_checkpoint(ck.bad()).metadata.at("step").get<int>(), 12);
}

// A shape whose element count overflows is refused naming the tensor, before any
// allocation or checksum.
TEST(Checkpoint, AnOverflowingShapeIsRefusedNamingTheTensor) {
  const ScratchDir d("ckpt-overflow");
  const std::string path = (d / "x.safetensors").string();
  const std::string json =
      R"({"big":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]},)"
      R"("__metadata__":{"crc32":"00000000","agilenn":"{}","format":"agilenn"}})";
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[static_cast<size_t>(i)] = static_cast<char>((json.size() >> (8 * i)) & 0xff);
  bytes += json + std::string(4, '\0');
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  const std::string error = error_of([&] { io::load_checkpoint(path); });
  EXPECT_THAT(error, HasSubstr("tensor 'big'"));
  EXPECT_THAT(error, HasSubstr("more elements than int64 holds"));
}

// Found by fuzzing (tests/fuzz/regressions/checkpoint): a shape or offset written as a
// float (here -2.5e89) went through nlohmann's unchecked float-to-integer conversion,
// undefined behaviour; so did a float in the metadata that later reads take as a count.
TEST(Checkpoint, NumbersOfTheWrongKindAreRefused) {
  const ScratchDir d("ckpt-types");
  const EditedCheckpoint ck(d);
  EXPECT_THAT(ck.error_replacing("\"shape\":[2,3]", "\"shape\":[-2e89]"), HasSubstr("not a list of integers"));
  EXPECT_THAT(ck.error_replacing("\"data_offsets\":[0,24]", "\"data_offsets\":[0.0,24]"),
              HasSubstr("not two byte offsets"));
  // Checksums intact: the number itself is refused.
  io::Checkpoint big_step = sample_checkpoint();
  big_step.metadata["step"] = 1e300;
  io::save_checkpoint(ck.bad(), big_step);
  EXPECT_THAT(error_of([&] { io::load_checkpoint(ck.bad()); }), HasSubstr("out of range"));
}

TEST(Checkpoint, AnInterruptedWriteLeavesThePreviousFileLoadable) {
  const ScratchDir d("ckpt-atomic");
  const std::string path = (d / "latest.safetensors").string();
  io::save_checkpoint(path, sample_checkpoint());
  const std::string replacement(4096, 'x');
  for (int64_t at : {0, 1, 100, 4095}) {
    EXPECT_THROW(io::write_file_atomically(path, replacement, at), Error);
    EXPECT_EQ(io::load_checkpoint(path).metadata.at("step").get<int>(), 12);
    EXPECT_EQ(std::distance(fs::directory_iterator(d), fs::directory_iterator{}), 1) << "temporary file left behind";
  }
}

// ---- batch-norm statistics for evaluation

// What the moving averages of one training step take in, per state: fed zeros as the old
// averages, the step's update is (1 − momentum)·batch statistic.
nn::TensorMap batch_statistics_of_a_training_step(const train::AgileNNStepOptions& opt, const nn::TensorMap& values,
                                                  const data::Batch& b) {
  auto step = train::build_agilenn_step(opt);
  Feeds feeds;
  for (const nn::ParamInfo& info : step->params.all())
    feeds[info.name] = info.kind == LeafKind::state ? Tensor::zeros(info.shape, opt.dtype) : values.at(info.name);
  feeds["images"] = b.images.to(opt.dtype);
  feeds["labels"] = b.labels;
  std::vector<NodeId> outs;
  for (const auto& [name, v] : step->state_updates) outs.push_back(v.id());
  const std::vector<Tensor> r = evaluate(step->graph, outs, feeds, cpu_backend());
  nn::TensorMap out;
  for (size_t i = 0; i < outs.size(); ++i) {
    std::vector<double> v = r[i].to_vector();
    for (double& x : v) x /= 1.0 - opt.preset.bn_momentum;
    out.emplace(step->state_updates[i].first, Tensor::from_vector(r[i].shape(), v, opt.dtype));
  }
  return out;
}

// Recomputed statistics are, per moving-statistics state of the model (every batch norm
// of FE, LP and RP: mean and variance), the mean over the batches of the batch statistic
// that training's moving average follows; the frozen reference net has none.
TEST(BatchNormStatistics, AreTheMeanOverBatchesOfWhatTheMovingAveragesTakeIn) {
  train::AgileNNStepOptions opt;
  opt.classes = 10;
  opt.batch = 8;
  opt.dtype = DType::f64;
  opt.attribution = false;
  const nn::TensorMap values = train::build_agilenn_step(opt)->params.initialise(3, DType::f64);
  const data::SyntheticDataset ds(10, opt.preset.input_size, opt.preset.input_size, 3, 64, 5);
  auto batch = [&](int64_t i) {
    data::Batch b = ds.batch(i * opt.batch, opt.batch);
    b.images = b.images.to(DType::f64);
    return b;
  };
  train::AgileNNStepOptions fwd = opt;
  fwd.gradients = false;
  auto forward = train::build_agilenn_step(fwd);
  EXPECT_TRUE(forward->grads.empty());
  const nn::TensorMap one = train::recompute_batch_norm_statistics(*forward, values, batch, 1, cpu_backend());
  const nn::TensorMap two = train::recompute_batch_norm_statistics(*forward, values, batch, 2, cpu_backend());
  const nn::TensorMap first = batch_statistics_of_a_training_step(opt, values, batch(0));
  const nn::TensorMap second = batch_statistics_of_a_training_step(opt, values, batch(1));

  size_t states = 0, batch_norms = 0;
  for (const nn::ParamInfo& info : forward->params.all()) {
    if (info.kind == LeafKind::state) ++states;
    if (info.name.size() > 6 && info.name.substr(info.name.size() - 6) == ".gamma") ++batch_norms;
  }
  EXPECT_EQ(states, 2 * batch_norms);
  ASSERT_EQ(one.size(), states);
  ASSERT_EQ(two.size(), states);
  for (const auto& [name, t] : one) {
    EXPECT_EQ(name.rfind("ref.", 0), std::string::npos) << name;
    EXPECT_EQ(t.dtype(), DType::f64);
    const std::vector<double> a = first.at(name).to_vector(), b = second.at(name).to_vector();
    const std::vector<double> o = t.to_vector(), w = two.at(name).to_vector();
    ASSERT_EQ(o.size(), a.size()) << name;
    double scale = 0;
    for (double x : a) scale = std::max(scale, std::abs(x));
    for (size_t i = 0; i < a.size(); ++i) {
      // The training step's value went through ·0.01 and /0.01: a few ulps of it.
      EXPECT_NEAR(o[i], a[i], 1e-12 * (1 + scale)) << name << "[" << i << "]";
      EXPECT_NEAR(w[i], (a[i] + b[i]) / 2, 1e-12 * (1 + scale)) << name << "[" << i << "]";
    }
    if (name.find("moving_var") != std::string::npos) {
      for (double x : o) EXPECT_GT(x, 0.0) << name;
    }
  }
  // The two batches differ, so their mean differs from the first alone.
  EXPECT_NE(one.at("rp.bn.moving_mean").to_vector(), two.at("rp.bn.moving_mean").to_vector());

  EXPECT_THAT(error_of([&] { train::recompute_batch_norm_statistics(*train::build_agilenn_step(opt), values, batch, 1, cpu_backend()); }),
              HasSubstr("without gradients"));
}

TEST(BatchNormStatistics, TinyRecomputesForEvaluationAndPaperKeepsTheSeedsMovingAverages) {
  EXPECT_GT(models::preset("tiny").eval_bn_batches, 0);
  EXPECT_EQ(models::preset("paper").eval_bn_batches, 0);
}

// ---- whole runs

train::RunConfig small_run(const fs::path& out, train::RunMode mode) {
  train::RunConfig c;
  c.mode = mode;
  c.dataset = "synthetic";
  c.out = out.string();
  c.batch = 16;
  c.epochs = 2;
  c.train_limit = 96;  // 6 steps per epoch
  c.test_limit = 40;
  return c;
}

std::map<std::string, std::vector<double>> tensors_of(const std::string& path) {
  std::map<std::string, std::vector<double>> out;
  for (const auto& [name, t] : io::load_checkpoint(path).tensors) out[name] = t.to_vector();
  return out;
}

TEST(TrainingRun, ResumingGivesBitIdenticalWeightsToAnUninterruptedRun) {
  const ScratchDir d("resume");
  std::ostringstream log;
  train::RunConfig ref = small_run(d / "ref", train::RunMode::reference);
  train::run_training(ref, cpu_backend(), log);

  for (train::RunMode mode : {train::RunMode::reference, train::RunMode::agilenn}) {
    const std::string tag = mode == train::RunMode::reference ? "reference" : "agilenn";
    train::RunConfig straight = small_run(d / (tag + "-straight"), mode);
    straight.reference = (d / "ref" / "latest.safetensors").string();
    train::RunConfig parts = straight;
    parts.out = (d / (tag + "-parts")).string();
    train::run_training(straight, cpu_backend(), log);
    parts.max_steps = 4;  // stops mid-epoch
    train::run_training(parts, cpu_backend(), log);
    parts.max_steps = 0;
    parts.resume = true;
    const train::RunSummary s = train::run_training(parts, cpu_backend(), log);
    EXPECT_EQ(s.steps, 12);
    EXPECT_EQ(tensors_of(straight.out + "/latest.safetensors"), tensors_of(parts.out + "/latest.safetensors")) << tag;
  }
}

// A run writes the statistics it evaluated with into its checkpoints: with recomputation
// they are those of the training images (not the moving averages), and `evaluate` of the
// checkpoint gives the run's own test accuracy.
TEST(TrainingRun, CheckpointsHoldTheStatisticsTheEvaluationUsed) {
  const ScratchDir d("bnstats");
  std::ostringstream log;
  std::map<int64_t, std::map<std::string, std::vector<double>>> saved;
  for (int64_t batches : {0, 3}) {
    train::RunConfig c = small_run(d / ("bn" + std::to_string(batches)), train::RunMode::agilenn);
    c.attribution = false;
    c.epochs = 1;
    c.eval_bn_batches = batches;
    c.test_limit = 0;  // the whole split, as `evaluate` takes it
    const train::RunSummary s = train::run_training(c, cpu_backend(), log);
    saved[batches] = tensors_of(c.out + "/latest.safetensors");
    const train::RunSummary e = train::evaluate_checkpoint(c.out + "/latest.safetensors", {.batch = 128}, cpu_backend(), log);
    EXPECT_EQ(e.test_accuracy, s.test_accuracy) << batches;
  }
  // Same seed, same steps: the parameters agree, the statistics do not.
  EXPECT_EQ(saved[0].at("rp.dense.weight"), saved[3].at("rp.dense.weight"));
  EXPECT_NE(saved[0].at("rp.bn.moving_mean"), saved[3].at("rp.bn.moving_mean"));
  // 6 steps of momentum 0.99 from 1 leave the moving variances at 0.94 + 0.06·(batch
  // variances): far from the batch variances themselves.
  double apart = 0, recomputed = 0;
  for (const auto& [name, v] : saved[3])
    if (name.find("moving_var") != std::string::npos && name.rfind("optimizer/", 0) != 0)
      for (size_t i = 0; i < v.size(); ++i) apart += std::abs(v[i] - saved[0].at(name)[i]), recomputed += v[i];
  EXPECT_GT(apart, 0.05 * recomputed);
}

// ---- figures: what TensorBoard shows and `evaluate --figures` writes

// Runs a Python script; its stdout (the test's verdicts) comes back.
std::string run_python(const fs::path& dir, const std::string& script) {
  const fs::path file = dir / "check.py", out = dir / "check.out";
  std::ofstream(file) << script;
  const int rc = std::system(("python3 " + file.string() + " > " + out.string() + " 2>&1").c_str());
  std::ifstream in(out);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_EQ(rc, 0) << text.str();
  return text.str();
}

// A small AgileNN run in d/agilenn whose reference net (d/ref, one epoch) is trained here.
train::RunConfig agilenn_run_after_a_reference(const ScratchDir& d, std::ostream& log) {
  train::RunConfig ref = small_run(d / "ref", train::RunMode::reference);
  ref.epochs = 1;
  train::run_training(ref, cpu_backend(), log);
  train::RunConfig c = small_run(d / "agilenn", train::RunMode::agilenn);
  c.reference = (d / "ref" / "latest.safetensors").string();
  return c;
}

// The events of a short AgileNN run read back by TensorBoard's own event accumulator: the
// pictured samples' three images each, decoding (Pillow) to the test images' size; the
// channel chart; the histograms, whose counts are the test samples (skewness) and the
// remote elements (codes); a scalar per centroid.
TEST(Figures, TensorBoardReadsTheImagesHistogramsAndCentroidsOfEachEvaluation) {
  if (!have_python("tensorboard, PIL"))
    GTEST_SKIP() << "python3 with tensorboard and Pillow is not installed (tools/setup.sh installs them)";
  const ScratchDir d("figures-tb");
  std::ostringstream log;
  train::RunConfig c = agilenn_run_after_a_reference(d, log);
  c.figure_samples = 3;
  train::run_training(c, cpu_backend(), log);
  const models::AgileNNPreset& p = c.preset;
  std::ostringstream script;
  script << "import io\n"
            "from PIL import Image\n"
            "from tensorboard.backend.event_processing.event_accumulator import EventAccumulator\n"
            "ea = EventAccumulator('" << (d / "agilenn" / "tensorboard").string()
         << "', size_guidance={'images': 0, 'histograms': 0, 'scalars': 0})\n"
            "ea.Reload()\n"
            "tags = ea.Tags()\n"
            "for tag in sorted(tags['images']):\n"
            "    events = ea.Images(tag)\n"
            "    im = Image.open(io.BytesIO(events[-1].encoded_image_string))\n"
            "    print('image', tag, len(events), events[-1].width, events[-1].height, im.size[0], im.size[1], im.mode)\n"
            "for tag in sorted(tags['histograms']):\n"
            "    h = ea.Histograms(tag)[-1].histogram_value\n"
            "    print('histogram', tag, round(h.num), len(h.bucket), round(sum(h.bucket)))\n"
            "print('centroids', len([t for t in tags['scalars'] if t.startswith('quantizer/centroid_')]))\n";
  const std::string out = run_python(d, script.str());
  train::AgileNNStepOptions one;
  one.preset = p;
  one.batch = 1;
  one.training = one.attribution = false;
  const int64_t codes = 40 * numel(train::build_agilenn_step(one)->quantized.shape());  // 40 test images
  // Two evaluations (two epochs) of each tag; the synthetic test images are 32×32 RGB.
  for (int64_t i = 0; i < 3; ++i)
    for (const char* kind : {"input", "local_importance", "remote_importance"})
      EXPECT_THAT(out, ::testing::ContainsRegex("image samples/" + std::to_string(i) + "_label_[0-9]+/" + kind +
                                              " 2 32 32 32 32 RGB"));
  EXPECT_THAT(out, ::testing::Not(::testing::HasSubstr("samples/3_")));
  EXPECT_THAT(out, ::testing::HasSubstr("image importance/channels 2 " + std::to_string(p.feature_channels * 10 + 2)));
  EXPECT_THAT(out, ::testing::HasSubstr("histogram test/skewness 40 30 40"));
  EXPECT_THAT(out, ::testing::HasSubstr("histogram quantizer/codes " + std::to_string(codes) + " " +
                                      std::to_string(p.num_centroids) + " " + std::to_string(codes)));
  EXPECT_THAT(out, ::testing::HasSubstr("histogram importance/channel_shares 1 " + std::to_string(p.feature_channels)));
  EXPECT_THAT(out, ::testing::HasSubstr("centroids " + std::to_string(p.num_centroids)));
}

// `evaluate --figures DIR` writes the same pictures as PNG files, which an independent
// decoder reads at the stated sizes; a reference-net checkpoint has none to write.
TEST(Figures, EvaluateWritesThePngFilesAndRefusesAReferenceNet) {
  const ScratchDir d("figures-png");
  std::ostringstream log;
  train::RunConfig c = agilenn_run_after_a_reference(d, log);
  c.epochs = 1;
  c.figure_samples = 0;
  train::run_training(c, cpu_backend(), log);
  const std::string figures = (d / "figures").string();
  train::evaluate_checkpoint(c.out + "/latest.safetensors", {.figures_dir = figures, .figure_samples = 2},
                             cpu_backend(), log);
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(figures)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  ASSERT_EQ(names.size(), 7u);
  EXPECT_EQ(names[0], "channel_importance.png");
  EXPECT_THAT(names[1], ::testing::MatchesRegex("sample_0_label_[0-9]+_pred_[0-9]+_input.png"));
  EXPECT_THAT(names[6], ::testing::MatchesRegex("sample_1_label_[0-9]+_pred_[0-9]+_remote_importance.png"));
  if (have_python("PIL")) {
    const std::string out = run_python(d, "import sys, glob, os\nfrom PIL import Image\n"
                                          "for f in sorted(glob.glob('" + figures + "/*.png')):\n"
                                          "    im = Image.open(f); im.load()\n"
                                          "    print(os.path.basename(f), im.size[0], im.size[1], im.mode)\n");
    EXPECT_THAT(out, ::testing::ContainsRegex("sample_0_label_[0-9]+_pred_[0-9]+_input.png 32 32 RGB"));
    EXPECT_THAT(out, ::testing::ContainsRegex("sample_1_label_[0-9]+_pred_[0-9]+_local_importance.png 32 32 RGB"));
    EXPECT_THAT(out, ::testing::HasSubstr("channel_importance.png " + std::to_string(c.preset.feature_channels * 10 + 2) +
                                        " 72 RGB"));
  }
  const std::string error = error_of([&] {
    train::evaluate_checkpoint((d / "ref" / "latest.safetensors").string(), {.figures_dir = (d / "none").string()}, cpu_backend(),
                               log);
  });
  EXPECT_THAT(error, ::testing::HasSubstr("--figures"));
  EXPECT_FALSE(fs::exists(d / "none"));
}

// ---- the run's configuration

// Every field that checkpoints record, away from its default (a seed beyond int64).
train::RunConfig unusual_config() {
  train::RunConfig c;
  c.dataset = "cifar100";
  c.preset = models::preset("paper");
  c.preset.split_ratio = 0.25;
  c.preset.num_centroids = 4;
  c.preset.rho = 0.6;
  c.preset.lambda = 0.7;
  c.epochs = 7;
  c.batch = 24;
  c.lr = 0.05;
  c.seed = 0xfedcba9876543210ULL;
  c.ig.steps = 5;
  c.ig.rule = xai::IgRule::gauss_legendre;
  c.reference = "runs/ref/best.safetensors";
  c.channel_remapping = "topk_appearance";
  c.train_limit = 500;
  c.eval_bn_batches = 3;
  c.augment = 0;  // the paper preset's is on
  c.sync_bn = true;
  return c;
}

TEST(RunConfig, RoundTripsThroughItsJson) {
  const train::RunConfig agilenn = unusual_config();
  train::RunConfig plain = agilenn;
  plain.attribution = false;
  plain.channel_remapping = "none";
  train::RunConfig reference = plain;
  reference.mode = train::RunMode::reference;
  reference.attribution = true;
  for (const train::RunConfig& c : {agilenn, plain, reference}) {
    const nlohmann::json j = train::config_json(c);
    const train::RunConfig back = train::config_from_json(j);
    EXPECT_EQ(back.mode, c.mode);
    EXPECT_EQ(back.dataset, c.dataset);
    EXPECT_EQ(back.preset.name, c.preset.name);
    EXPECT_EQ(back.preset.split_ratio, c.preset.split_ratio);
    EXPECT_EQ(back.preset.num_centroids, c.preset.num_centroids);
    EXPECT_EQ(back.preset.rho, c.preset.rho);
    EXPECT_EQ(back.preset.lambda, c.preset.lambda);
    EXPECT_EQ(back.epochs, c.epochs);
    EXPECT_EQ(back.batch, c.batch);
    EXPECT_EQ(back.lr, c.lr);
    EXPECT_EQ(back.seed, c.seed);
    EXPECT_EQ(back.ig.steps, c.ig.steps);
    EXPECT_EQ(back.ig.rule, c.ig.rule);
    EXPECT_EQ(back.reference, c.reference);
    EXPECT_EQ(back.channel_remapping, c.channel_remapping);
    EXPECT_EQ(back.train_limit, c.train_limit);
    EXPECT_EQ(back.attribution, c.attribution);
    EXPECT_EQ(back.eval_bn_batches, c.eval_bn_batches);
    EXPECT_EQ(back.augment, c.augment);
    EXPECT_EQ(back.sync_bn, c.sync_bn);
    EXPECT_EQ(train::config_json(back), j) << j.dump();
  }
}

// The keys and values of checkpoints written before config_from_json existed: they load,
// and a resumed run writes them back unchanged (its check compares the two).
TEST(RunConfig, ReadsTheCheckpointsFormat) {
  const nlohmann::json written = nlohmann::json::parse(R"({
    "mode": "agilenn", "dataset": "fashion-mnist", "preset": {"name": "tiny", "split_ratio": 0.2, "num_centroids": 8,
    "input_size": 28, "reference_padding": "same"}, "normalization": "dataset", "init": "", "epochs": 5, "batch": 64, "lr": 0.0, "seed": 1, "ig_steps": 2, "ig_rule": "trapezoid", "rho": 0.8,
    "lambda": 0.8, "reference": "runs/fashion-mnist-tiny/reference/best.safetensors",
    "channel_remapping": "global_importance", "train_limit": 0, "attribution": true, "eval_bn_batches": 32,
    "augment": false})");
  EXPECT_EQ(train::config_json(train::config_from_json(written)), written);
  // The preset's defaults, resolved as written, are those of a run that left them alone.
  train::RunConfig defaults;
  defaults.epochs = 5;
  defaults.reference = "runs/fashion-mnist-tiny/reference/best.safetensors";
  // Except λ: the tiny preset's moved from 0.8 to 0.7 after those checkpoints (each keeps
  // the 0.8 it wrote, as the first check shows).
  nlohmann::json resolved = written;
  resolved["lambda"] = 0.7;
  EXPECT_EQ(train::config_json(defaults), resolved);

  // Before the plain baseline, evaluation statistics and the augmentation switch, every run
  // had the attribution losses, the moving averages and augmented images; before imported
  // weights, the preset's input size, same padding, the dataset's normalisation, no --init.
  nlohmann::json older = written;
  for (const char* key : {"attribution", "eval_bn_batches", "augment", "normalization", "init"}) older.erase(key);
  for (const char* key : {"input_size", "reference_padding"}) older.at("preset").erase(key);
  const train::RunConfig c = train::config_from_json(older);
  EXPECT_TRUE(c.attribution);
  EXPECT_EQ(c.eval_bn_batches, 0);
  EXPECT_EQ(c.augment, 1);
  EXPECT_EQ(c.preset.input_size, 28);
  EXPECT_EQ(c.preset.reference.padding, ops::Padding::same);
  EXPECT_EQ(c.normalization, "dataset");
  EXPECT_EQ(c.init, "");
}

// Each mistake is refused naming the flag, before any data loads: the data directory
// does not exist, and only a good configuration gets as far as finding that out.
TEST(RunConfig, BadConfigurationsAreRefusedNamingTheFlagBeforeDataLoads) {
  const ScratchDir d("validate");
  std::ostringstream log;
  train::RunConfig good = small_run(d / "run", train::RunMode::agilenn);
  good.dataset = "cifar10";
  good.data_dir = (d / "no-such-data").string();
  good.reference = (d / "ref.safetensors").string();
  EXPECT_NO_THROW(train::validate(good));
  EXPECT_THAT(error_of([&] { train::run_training(good, cpu_backend(), log); }), HasSubstr("no-such-data"));

  struct Case {
    std::function<void(train::RunConfig&)> change;
    std::string message;
  };
  const std::vector<Case> cases = {
      {[](auto& c) { c.ig.steps = 1; }, "--ig-steps 1: the trapezoid rule needs at least 2 points"},
      {[](auto& c) {
         c.ig.steps = 0;
         c.ig.rule = xai::IgRule::left_riemann;
       },
       "--ig-steps 0: "},
      {[](auto& c) { c.dataset = "imagenet"; }, "--dataset imagenet: unknown dataset"},
      {[](auto& c) { c.preset.split_ratio = 0.01; }, "--split-ratio 0.01: keeps 0 of preset tiny's 10 feature"},
      {[](auto& c) { c.preset.split_ratio = 1; }, "--split-ratio 1: keeps 10 of"},
      {[](auto& c) { c.preset.num_centroids = 1; }, "--num-centroids 1: "},
      {[](auto& c) { c.preset.rho = 1.5; }, "--rho 1.5: "},
      {[](auto& c) { c.preset.lambda = -0.25; }, "--lambda -0.25: "},
      {[](auto& c) { c.channel_remapping = "sideways"; }, "--channel-remapping sideways: "},
      {[](auto& c) { c.epochs = 0; }, "--epochs 0: "},
      {[](auto& c) { c.batch = -4; }, "--batch-size -4: "},
      {[](auto& c) { c.lr = -0.1; }, "--lr -0.1: "},
      {[](auto& c) { c.max_steps = -1; }, "--max-steps -1: "},
      {[](auto& c) { c.train_limit = -1; }, "--train-limit -1: "},
      {[](auto& c) { c.test_limit = -1; }, "--test-limit -1: "},
      {[](auto& c) { c.eval_bn_batches = -2; }, "--eval-bn-batches -2: "},
      {[](auto& c) {
         c.attribution = false;
         c.channel_remapping = "global_importance";
       },
       "--channel-remapping global_importance: channel remapping ranks channels by their attributions: it needs the "
       "attribution losses (not --plain)"},
      {[](auto& c) { c.reference.clear(); }, "--reference not given"},
      {[](auto& c) { c.preset.input_size = 0; }, "--input-size 0: must be positive"},
      {[](auto& c) { c.normalization = "zscore"; }, "--normalization zscore: unknown normalization"},
      {[](auto& c) { c.init = "x.safetensors"; }, "--init x.safetensors: only the reference net starts from"},
  };
  for (const Case& k : cases) {
    train::RunConfig c = good;
    k.change(c);
    EXPECT_THAT(error_of([&] { train::validate(c); }), HasSubstr(k.message));
    const std::string e = error_of([&] { train::run_training(c, cpu_backend(), log); });
    EXPECT_THAT(e, HasSubstr(k.message));
    EXPECT_THAT(e, ::testing::Not(HasSubstr("no-such-data")));
  }
  EXPECT_FALSE(fs::exists(d / "run"));

  // Without the attribution losses, neither a reference net nor a remapping is needed.
  train::RunConfig plain = good;
  plain.reference.clear();
  plain.attribution = false;
  plain.channel_remapping = "none";
  EXPECT_NO_THROW(train::validate(plain));
  train::RunConfig reference = plain;
  reference.mode = train::RunMode::reference;
  reference.attribution = true;
  reference.channel_remapping.clear();
  EXPECT_NO_THROW(train::validate(reference));
}

TEST(TrainingRun, AgileNNWithoutAReferenceCheckpointIsRefused) {
  const ScratchDir d("noref");
  std::ostringstream log;
  train::RunConfig c = small_run(d, train::RunMode::agilenn);
  EXPECT_THAT(error_of([&] { train::run_training(c, cpu_backend(), log); }), HasSubstr("--reference"));
  c.reference = (d / "missing.safetensors").string();
  EXPECT_THAT(error_of([&] { train::run_training(c, cpu_backend(), log); }), HasSubstr("missing.safetensors"));
}

// ---- the command line

int run_cli(const std::string& args, std::string* output = nullptr) {
  return testing::run_command(std::string(AGILENN_TRAIN_BINARY) + " " + args, output);
}

TEST(TrainCli, BadFlagsExitNonZeroNamingThem) {
  std::string out;
  EXPECT_NE(run_cli("train --no-such-flag", &out), 0);
  EXPECT_THAT(out, HasSubstr("--no-such-flag"));
  EXPECT_NE(run_cli("train --rho 1.5", &out), 0);
  EXPECT_THAT(out, HasSubstr("--rho"));
  EXPECT_NE(run_cli("train --ig-rule simpson --dataset synthetic --reference x", &out), 0);
  EXPECT_THAT(out, HasSubstr("simpson"));
  EXPECT_NE(run_cli("reference --dataset cifar10 --data-dir /nonexistent", &out), 0);
  EXPECT_THAT(out, HasSubstr("/nonexistent"));
  EXPECT_NE(run_cli("import-reference w.safetensors --format onnx --out x", &out), 0);
  EXPECT_THAT(out, HasSubstr("--format"));
  EXPECT_NE(run_cli("import-reference /nonexistent/w.safetensors --format keras --out x", &out), 0);
  EXPECT_THAT(out, HasSubstr("cannot open safetensors file '/nonexistent/w.safetensors'"));
  EXPECT_NE(run_cli("reference --dataset synthetic --init /nonexistent/ref.safetensors", &out), 0);
  EXPECT_THAT(out, HasSubstr("/nonexistent/ref.safetensors"));
  EXPECT_NE(run_cli("reference --device tpu", &out), 0);
  EXPECT_THAT(out, HasSubstr("--device"));
  EXPECT_THAT(out, HasSubstr("tpu"));
  EXPECT_NE(run_cli("reference --tf32 --dataset synthetic", &out), 0);
  EXPECT_THAT(out, HasSubstr("--device cpu --tf32: backend 'cpu' has no TF32 math"));
  EXPECT_EQ(run_cli("train --help", &out), 0);
  EXPECT_THAT(out, HasSubstr("--split-ratio,--split_ratio"));
  EXPECT_THAT(out, HasSubstr("--lambda,--klambda"));
  EXPECT_THAT(out, HasSubstr("--ig-steps"));
  EXPECT_THAT(out, HasSubstr("--cuda-graph"));
  EXPECT_THAT(out, HasSubstr("--tf32"));
}

// The configuration is checked before the device opens (which prints its "device:" line)
// or data loads; the seed's flag names are aliases of the kebab-case ones.
TEST(TrainCli, BadConfigurationsStopBeforeTheDeviceOpensOrDataLoads) {
  const std::string base = "train --data-dir /nonexistent-agilenn-data --reference ref.safetensors ";
  std::string out;
  // A good configuration gets as far as the data.
  EXPECT_EQ(run_cli(base + "--ig-steps 1 --ig-rule middle", &out), 1);
  EXPECT_THAT(out, HasSubstr("device: "));
  EXPECT_THAT(out, HasSubstr("/nonexistent-agilenn-data"));

  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--ig-steps 1", "agilenn-train: error: --ig-steps 1: the trapezoid rule needs at least 2 points"},
      {"--klambda 1.5", "--lambda 1.5: "},
      {"--split_ratio 0.01", "--split-ratio 0.01: "},
      {"--num_centroids 1", "--num-centroids 1: "},
      {"--channel_remapping sideways", "--channel-remapping sideways: "},
      {"--plain --channel-remapping topk_appearance", "(not --plain)"},
      {"--batch-size 0", "--batch-size 0: "},
      {"--dataset imagenet", "--dataset imagenet: "},
  };
  for (const auto& [flags, message] : cases) {
    EXPECT_EQ(run_cli(base + flags, &out), 1) << flags;
    EXPECT_THAT(out, HasSubstr(message)) << flags;
    EXPECT_THAT(out, ::testing::Not(HasSubstr("device: "))) << flags;
    EXPECT_THAT(out, ::testing::Not(HasSubstr("/nonexistent-agilenn-data"))) << flags;
  }
  EXPECT_EQ(run_cli("train --dataset synthetic", &out), 1);
  EXPECT_THAT(out, HasSubstr("--reference not given"));
}

// Without a GPU (or in a CPU-only build) --device cuda stops before anything is written,
// naming the flag and the reason; where a GPU and a CUDA build exist it trains there.
TEST(TrainCli, CudaDeviceTrainsOnAGpuOrIsRefusedNamingTheReason) {
  const ScratchDir d("cli-cuda");
  const std::string run = (d / "run").string();
  std::string out;
  const int status = run_cli("reference --device cuda --dataset synthetic --batch-size 16 --epochs 1 --train-limit 32 "
                             "--test-limit 16 --out " + run, &out);
  if (status == 0) {
    EXPECT_THAT(out, HasSubstr("device: cuda:0"));
    EXPECT_THAT(out, HasSubstr("training on cuda (graph replay)"));
    EXPECT_THAT(out, HasSubstr("final: steps 2"));
    EXPECT_TRUE(fs::exists(fs::path(run) / "latest.safetensors"));
    return;
  }
  EXPECT_EQ(status, 1);
  EXPECT_THAT(out, HasSubstr("agilenn-train: error: --device cuda: "));
  EXPECT_THAT(out, ::testing::AnyOf(HasSubstr("no usable CUDA device"), HasSubstr("no CUDA device present"),
                                    HasSubstr("built without CUDA")));
  EXPECT_THAT(out, ::testing::Not(HasSubstr("final:")));
  EXPECT_FALSE(fs::exists(run));
}

TEST(TrainCli, ACorruptCheckpointIsRefusedAndLeftAlone) {
  const ScratchDir d("cli-corrupt");
  const std::string ck = (d / "latest.safetensors").string();
  std::ofstream(ck) << "not a checkpoint";
  std::string out;
  EXPECT_NE(run_cli("evaluate " + ck, &out), 0);
  EXPECT_THAT(out, HasSubstr("latest.safetensors"));
  std::ifstream in(ck);
  EXPECT_EQ(std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>()), "not a checkpoint");
}

}  // namespace
}  // namespace agilenn
