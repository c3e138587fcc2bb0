// Checkpoints: one safetensors file (readable by the `safetensors` Python package) with
// every parameter, state and optimizer tensor, and JSON metadata (config, step, epoch,
// RNG and data position, metrics, engine version) plus a CRC-32 of the tensor bytes in
// its __metadata__. Writes go to a temporary file that is fsynced and renamed, so a crash
// never leaves a broken file under the final name.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "engine/nn/params.h"

namespace agilenn::io {

struct Checkpoint {
  nn::TensorMap tensors;
  nlohmann::json metadata = nlohmann::json::object();
};

constexpr const char* kEngineVersion = "0.1.0";

void save_checkpoint(const std::string& path, const Checkpoint& ckpt);
// Throws an Error naming the file (and the tensor) if anything is missing, truncated,
// inconsistent or fails the checksum.
Checkpoint load_checkpoint(const std::string& path);

// A safetensors file written by anyone (PyTorch's or Keras' weights, say): its tensors of
// the dtypes the engine holds (F32, F64, I32, U8; F16 and BF16 widened to f32 exactly), and
// the names and dtypes of the others (PyTorch's I64 batch-norm counters, say). The file is
// checked as a checkpoint's is.
struct SafetensorsFile {
  nn::TensorMap tensors;
  std::map<std::string, std::string> other_dtypes;
};
SafetensorsFile read_safetensors(const std::string& path);

// Checks that `ckpt` holds every tensor of `expected` with its shape (and nothing of
// another shape); names the first mismatch.
void check_against(const Checkpoint& ckpt, const nn::ParamSet& expected, const std::string& path);

// The bytes of the file at `path`; errors name it as `what` (e.g. "checkpoint").
std::string read_file(const std::string& path, const char* what);

// Writes `bytes` to `path` atomically: temporary file in the same directory, fsync,
// rename, fsync of the directory. `fail_after` (tests only) aborts after that many bytes.
void write_file_atomically(const std::string& path, const std::string& bytes, int64_t fail_after = -1);

}  // namespace agilenn::io
