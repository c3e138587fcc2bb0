#include "engine/export/export.h"

#include <openssl/evp.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <ostream>

#include "engine/core/error.h"
#include "engine/core/progress.h"
#include "engine/export/c_sources.h"
#include "engine/export/device_c99.h"
#include "engine/export/device_int8.h"
#include "engine/export/onnx.h"
#include "engine/export/split.h"
#include "engine/io/checkpoint.h"
#include "engine/passes/passes.h"
#include "engine/runtime/executor.h"
#include "engine/train/run.h"

namespace agilenn::exporting {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string sha256_hex(const std::string& bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  AGILENN_CHECK(EVP_Digest(bytes.data(), bytes.size(), digest, &n, EVP_sha256(), nullptr) == 1, "sha256 failed");
  std::string hex;
  for (unsigned int i = 0; i < n; ++i) {
    char two[3];
    std::snprintf(two, sizeof(two), "%02x", digest[i]);
    hex += two;
  }
  return hex;
}

// The split's two halves, run batch by batch on the backend.
class SplitRunner {
 public:
  SplitRunner(const SplitGraphs& s, const nn::TensorMap& values, Backend& backend)
      : backend_(backend),
        device_(s.graph, compile(s.graph, {s.local_logits.id(), s.codes.id()}), backend),
        server_(s.graph, compile(s.graph, {s.logits.id()}), backend) {
    for (const nn::ParamInfo& info : s.params.all()) params_[info.name] = backend.to_device(values.at(info.name));
  }

  // Local logits [B,classes] and codes [B,h,w,R] of preprocessed images, on the host.
  std::pair<Tensor, Tensor> device(const Tensor& images) {
    Feeds feeds = params_;
    feeds["images"] = backend_.to_device(images);
    std::vector<Tensor> r = device_.run(feeds);
    device_.check_faults();
    return {backend_.to_host(r[0]), backend_.to_host(r[1])};
  }
  Tensor server(const Tensor& codes, const Tensor& local_logits) {
    Feeds feeds = params_;
    feeds["codes"] = backend_.to_device(codes);
    feeds["local_logits"] = backend_.to_device(local_logits);
    std::vector<Tensor> r = server_.run(feeds);
    server_.check_faults();
    return backend_.to_host(r[0]);
  }

 private:
  Backend& backend_;
  Executor device_, server_;
  Feeds params_;
};

// Codes of image i of a batch's codes [B,h,w,R].
std::vector<uint8_t> image_codes(const Tensor& codes, int64_t i) {
  const int64_t n = codes.numel() / codes.dim(0);
  const uint8_t* p = codes.data<uint8_t>() + i * n;
  return {p, p + n};
}

// The int8 device half's bytes as C, for a TFLite Micro project (16-byte aligned, as the
// flatbuffer's buffers expect).
std::string c_array_header() {
  return "// The agilenn device half, int8 TFLite flatbuffer (device_int8.tflite) as a C array.\n"
         "#ifndef AGILENN_DEVICE_MODEL_H\n#define AGILENN_DEVICE_MODEL_H\n"
         "extern const unsigned char agilenn_device_model[];\n"
         "extern const unsigned int agilenn_device_model_len;\n#endif\n";
}

std::string c_array_source(const std::string& bytes) {
  std::string s = "#include \"agilenn_device_model.h\"\n\n"
                  "const unsigned char agilenn_device_model[] __attribute__((aligned(16))) = {";
  for (size_t i = 0; i < bytes.size(); ++i) {
    char hex[8];
    std::snprintf(hex, sizeof(hex), "0x%02x,", static_cast<unsigned char>(bytes[i]));
    s += (i % 16 == 0 ? "\n  " : " ") + std::string(hex);
  }
  return s + "\n};\nconst unsigned int agilenn_device_model_len = " + std::to_string(bytes.size()) + "u;\n";
}

// Where the export is built before it takes its final name.
struct StagingDir {
  fs::path path;
  explicit StagingDir(const fs::path& out)
      : path(out.parent_path() / ("." + out.filename().string() + ".tmp-" + std::to_string(::getpid()))) {
    fs::remove_all(path);
    fs::create_directory(path);
  }
  ~StagingDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

}  // namespace

ExportSummary export_split(const ExportOptions& o, Backend& backend, std::ostream& log) {
  AGILENN_CHECK(!o.out.empty(), "--out not given: the directory to write");
  fs::path out = fs::absolute(o.out).lexically_normal();
  if (!out.has_filename()) out = out.parent_path();  // "dir/" names dir
  AGILENN_CHECK(!fs::exists(fs::symlink_status(out)),
                "--out " << o.out << ": exists; agilenn-export writes a new directory, never over one");
  AGILENN_CHECK(fs::is_directory(out.parent_path()),
                "--out " << o.out << ": its parent directory '" << out.parent_path().string() << "' does not exist");
  AGILENN_CHECK(o.calibration >= 0, "--calibration " << o.calibration << ": must be 0 (all) or more");
  AGILENN_CHECK(o.test_limit >= 0, "--test-limit " << o.test_limit << ": must be 0 (all) or more");
  AGILENN_CHECK(o.batch > 0, "--batch-size " << o.batch << ": must be positive");
  const std::string checkpoint_bytes = io::read_file(o.checkpoint, "checkpoint");
  const io::Checkpoint ck = io::load_checkpoint(o.checkpoint);
  AGILENN_CHECK(ck.metadata.contains("config") && ck.metadata.contains("classes"),
                "'" << o.checkpoint << "' has no run configuration: not written by agilenn-train");
  train::RunConfig cfg = train::config_from_json(ck.metadata.at("config"));
  AGILENN_CHECK(cfg.mode == train::RunMode::agilenn,
                "'" << o.checkpoint << "' is a reference-net checkpoint; agilenn-export takes an AgileNN one "
                    << "(from `agilenn-train train`)");
  cfg.data_dir = o.data_dir;
  const int64_t classes = ck.metadata.at("classes").get<int64_t>();
  const models::AgileNNPreset& p = cfg.preset;

  // (a) the checkpoint as the engine evaluates it.
  train::EvaluateOptions eval;
  eval.data_dir = o.data_dir;
  eval.batch = o.batch;
  eval.figure_samples = 0;
  eval.test_limit = o.test_limit;
  const train::RunSummary engine = train::evaluate_checkpoint(o.checkpoint, eval, backend, log);

  auto split = build_split(p, classes, o.batch);
  io::check_against(ck, split->params, o.checkpoint);
  SplitRunner run(*split, ck.tensors, backend);
  Int8DeviceExporter int8(ck.tensors, p, classes, o.batch, backend);
  const Shape fshape = models::feature_shape(p);
  const int64_t remote = fshape[2] - p.local_channels();

  // Runs f(batch, index) over a dataset's batches (the last one padded), with a progress line.
  auto for_each_batch = [&](const data::ImageDataset& ds, const std::string& label, const auto& f) {
    data::Loader loader(ds, o.batch, train::preprocessing(cfg, false), cfg.seed, false);
    Progress progress(log, Progress::mode_for(log), label, loader.batches_covering(), static_cast<double>(o.batch),
                      "images");
    for (int64_t b = 0; b < loader.batches_covering(); ++b) {
      progress.update(b);
      f(loader.get(0, b), b);
    }
  };

  // The codec's model (code counts per remote channel) and the int8 device half's
  // activation ranges, over the calibration images.
  const data::ImageDataset train_set =
      data::first_samples(data::load_dataset(cfg.dataset, o.data_dir, data::Split::train), o.calibration);
  std::vector<double> counts(static_cast<size_t>(remote * p.num_centroids), 0.0);
  double folding_error = 0;  // the folded float device half's local logits against the split's
  for_each_batch(train_set, "calibrating", [&](const data::Loader::LoadedBatch& lb, int64_t) {
    const Tensor folded_logits = int8.run(lb.batch.images, lb.valid);
    const auto [local_logits, codes] = run.device(lb.batch.images);
    for (int64_t i = 0; i < lb.valid * classes; ++i)
      folding_error = std::max(folding_error, std::abs(folded_logits.item(i) - local_logits.item(i)));
    const uint8_t* c = codes.data<uint8_t>();
    for (int64_t i = 0; i < lb.valid * codes.numel() / o.batch; ++i)
      counts[static_cast<size_t>((i % remote) * p.num_centroids + c[i])] += 1;
  });
  const CodecModel codec = CodecModel::fit(counts, remote, p.num_centroids);

  // (b) in the engine: every test image through the device half, the encoder, the decoder
  // and the server half.
  const data::ImageDataset test_set =
      data::first_samples(data::load_dataset(cfg.dataset, o.data_dir, data::Split::test), o.test_limit);
  ExportSummary summary;
  summary.engine_accuracy = engine.test_accuracy;
  std::vector<double> test_counts(counts.size(), 0.0);
  double correct = 0, stream_bytes = 0;
  // The split's logits of the first test images, which a runtime's must match image by image
  // (tools/verify-export.py): top-1 alone hides a preprocessing that differs a little.
  constexpr int64_t kLogitsChecked = 16;
  std::vector<std::vector<double>> first_logits;
  for_each_batch(test_set, "measuring the split", [&](const data::Loader::LoadedBatch& lb, int64_t b) {
    const auto [local_logits, codes] = run.device(lb.batch.images);
    Tensor received = Tensor::zeros(codes.shape(), DType::u8);
    for (int64_t i = 0; i < o.batch; ++i) {
      const std::vector<uint8_t> sent = image_codes(codes, i);
      const std::vector<uint8_t> stream = encode(codec, sent);
      const std::vector<uint8_t> back = decode(codec, stream.data(), stream.size(), sent.size());
      AGILENN_CHECK(back == sent, "codec round trip failed on test image " << b * o.batch + i);
      std::copy(back.begin(), back.end(), received.data<uint8_t>() + i * static_cast<int64_t>(sent.size()));
      if (i >= lb.valid) continue;
      stream_bytes += static_cast<double>(stream.size());
      for (size_t k = 0; k < sent.size(); ++k)
        test_counts[(k % static_cast<size_t>(remote)) * static_cast<size_t>(p.num_centroids) + sent[k]] += 1;
    }
    const Tensor logits = run.server(received, local_logits);
    for (int64_t i = 0; i < lb.valid; ++i) {
      if (b * o.batch + i < kLogitsChecked) {
        std::vector<double> row;
        for (int64_t c = 0; c < classes; ++c) row.push_back(logits.item(i * classes + c));
        first_logits.push_back(row);
      }
      int64_t best = 0;
      for (int64_t c = 1; c < classes; ++c)
        if (logits.item(i * classes + c) > logits.item(i * classes + best)) best = c;
      correct += best == lb.batch.labels.data<int32_t>()[i] ? 1 : 0;
    }
  });
  summary.test_images = test_set.size();
  const double images = static_cast<double>(summary.test_images);
  summary.split_accuracy = correct / images;
  summary.bits = code_cost(test_counts, remote, p.num_centroids, codec);
  for (double* v : {&summary.bits.raw, &summary.bits.entropy, &summary.bits.context_entropy, &summary.bits.huffman,
                    &summary.bits.model})
    *v /= images;
  summary.coded_bits = stream_bytes * 8 / images;

  Graph g;
  nn::ParamSet params;
  const Tensor centroids =
      evaluate(g, {models::centroid_values(nn::Scope(g, params, false).child("quantizer"), p).id()},
               {{"quantizer.centroids", ck.tensors.at("quantizer.centroids")}}, cpu_backend())[0];
  const Int8Device device_int8 = int8.build(centroids);

  // The artifacts, built under a temporary name and renamed at the end.
  auto one = build_split(p, classes, 1);
  std::map<std::string, std::string> files{
      {"device.onnx", to_onnx(one->graph, {{"images", one->images}},
                              {{"local_logits", one->local_logits}, {"codes", one->codes}}, ck.tensors, "device")},
      {"server.onnx", to_onnx(one->graph, {{"codes", one->sent_codes}, {"local_logits", one->sent_local_logits}},
                              {{"logits", one->logits}}, ck.tensors, "server")},
      {"device_int8.tflite", device_int8.tflite},
      {"device_int8/agilenn_device_model.h", c_array_header()},
      {"device_int8/agilenn_device_model.c", c_array_source(device_int8.tflite)},
      {"codec/agilenn_codec.h", kCodecHeaderSource},
      {"codec/agilenn_codec.c", kCodecSource}};
  int64_t c99_arena = 0;
  if (o.c99) {
    const C99Device c = device_c99(device_int8.model, device_int8.images, device_int8.local_logits, device_int8.codes,
                                   codec, "from " + o.checkpoint + ", engine " + kEngineCommit);
    files["device_c99/agilenn_device.h"] = c.header;
    files["device_c99/agilenn_device.c"] = c.source;
    files["device_c99/agilenn_int8.h"] = kInt8KernelsHeaderSource;
    files["device_c99/agilenn_int8.c"] = kInt8KernelsSource;
    c99_arena = c.arena_bytes;
  }
  const Tensor v = ck.tensors.at("mix.v").to(DType::f64);
  const double e0 = std::exp(v.item(0)), e1 = std::exp(v.item(1));
  const data::Preprocess pre = train::preprocessing(cfg, false);
  json artifacts = json::object();
  for (const auto& [name, bytes] : files) artifacts[name] = {{"bytes", bytes.size()}, {"sha256", sha256_hex(bytes)}};
  const json manifest = {
      {"format", "agilenn-split"},
      {"engine", {{"version", io::kEngineVersion}, {"commit", kEngineCommit}}},
      {"checkpoint", {{"path", o.checkpoint}, {"sha256", sha256_hex(checkpoint_bytes)}, {"step", ck.metadata.at("step")}}},
      {"dataset", cfg.dataset},
      {"classes", classes},
      {"preset", p.name},
      {"input",
       {{"shape", {1, p.input_size, p.input_size, 3}},
        {"layout", "NHWC float32"},
        {"preprocessing", "pixels scaled to [0, 1], normalised per channel (x - mean) / std, then resized "
                          "bilinearly (half-pixel centres, no antialiasing) to the input size"},
        {"mean", pre.mean},
        {"std", pre.std}}},
      {"features",
       {{"shape", fshape},
        {"split_ratio", p.split_ratio},
        {"local_channels", p.local_channels()},
        {"remote_channels", remote},
        {"kept_channels", "the first local_channels of the features (a channel remapping is in the weights)"},
        {"channel_remapping", ck.metadata.at("config").at("channel_remapping")}}},
      {"quantizer",
       {{"centroids", centroids.to_vector()},
        {"codes", "uint8 [1,h,w,remote_channels], NHWC: the index of each remote value's nearest centroid"}}},
      {"mix", {{"local_weight", e0 / (e0 + e1)}, {"remote_weight", e1 / (e0 + e1)}}},
      {"codec", [&] {
         json c = codec.to_json();
         c["context_of_code"] = "code i of an image uses table i % remote_channels";
         c["stream"] = "rANS: the encoder's final 32-bit state little-endian, then the renormalisation bytes";
         return c;
       }()},
      {"artifacts", artifacts},
      {"halves",
       {{"device", "device.onnx: images -> local_logits [1,classes] float32, codes uint8"},
        {"device_int8",
         "device_int8.tflite (and device_int8/, its bytes as a C array): images int8 -> local_logits int8, "
         "codes uint8; real = scale * (q - zero_point)"},
        {"server", "server.onnx: codes uint8, local_logits float32 -> logits [1,classes]"}}},
      {"device_int8",
       {{"quantization", device_int8.quantization},
        {"weights", "per-channel symmetric int8 (the dense layer per tensor), int32 biases; batch norms folded"},
        {"activations", "per-tensor asymmetric int8; ReLU6 outputs on [0, 6], the rest calibrated (min/max)"},
        {"budget",
         {{"model_bytes", device_int8.tflite.size()},
          {"weight_bytes", device_int8.model.constant_bytes()},
          {"peak_activation_bytes",
           device_int8.model.peak_activation_bytes({device_int8.images}, {device_int8.local_logits, device_int8.codes})},
          {"liveness", "computed tensors (input and outputs included) alive at once, ops in order"}}},
        {"folding_max_abs_error_local_logits", folding_error},
        {"c99", o.c99 ? json{{"sources", "device_c99/ with codec/: agilenn_device_run(image, local_logits, codes, "
                                          "stream, capacity)"},
                             {"arena_bytes", c99_arena}}
                      : json("not written (--target c99)")}}},
      {"measured",
       {{"calibration_images", train_set.size()},
        {"test_images", summary.test_images},
        {"engine_top1", summary.engine_accuracy},
        {"split_top1_engine", summary.split_accuracy},
        {"first_test_logits", first_logits},
        {"bits_per_image",
         {{"raw", summary.bits.raw},
          {"entropy", summary.bits.entropy},
          {"per_channel_entropy", summary.bits.context_entropy},
          {"huffman_per_channel", summary.bits.huffman},
          {"rans_model", summary.bits.model},
          {"rans_streams", summary.coded_bits}}}}}};
  files["manifest.json"] = manifest.dump(2) + "\n";

  const StagingDir staging(out);
  for (const auto& [name, bytes] : files) io::write_file_atomically((staging.path / name).string(), bytes);
  std::error_code ec;
  // The check at the start may be minutes old: refuse anything that appeared at `out` since.
  AGILENN_CHECK(!fs::exists(fs::symlink_status(out)),
                "--out " << o.out << ": appeared while exporting; agilenn-export never writes over it");
  fs::rename(staging.path, out, ec);
  AGILENN_CHECK(!ec, "cannot rename '" << staging.path.string() << "' to '" << out.string() << "': " << ec.message());
  log << "exported " << o.checkpoint << " to " << out.string() << ": engine top-1 " << summary.engine_accuracy
      << ", split " << summary.split_accuracy << " on " << summary.test_images << " test images; remote codes "
      << summary.coded_bits << " bits/image coded (" << summary.bits.raw << " raw, " << summary.bits.context_entropy
      << " at their per-channel entropy)" << std::endl;
  return summary;
}

}  // namespace agilenn::exporting
