// What the export's tests share: a small trained AgileNN checkpoint to export.
#pragma once

#include <filesystem>
#include <sstream>
#include <string>

#include "engine/runtime/backend_registry.h"
#include "engine/train/run.h"

namespace agilenn::testing {

inline const std::string kFmnistDir = "/usr/share/datasets/fashion-mnist";

// A small AgileNN model trained without the attribution losses (the export does not need
// them, and no reference net is needed to train it); returns its checkpoint.
inline std::string trained(const std::filesystem::path& dir, const std::string& dataset, int64_t train_limit,
                           const std::string& data_dir = "") {
  train::RunConfig c;
  c.dataset = dataset;
  c.data_dir = data_dir;
  c.attribution = false;
  c.epochs = 1;
  c.batch = 32;
  c.train_limit = train_limit;
  c.test_limit = 256;
  c.figure_samples = 0;
  c.out = (dir / "run").string();
  std::ostringstream log;
  train::run_training(c, cpu_backend(), log);
  return c.out + "/best.safetensors";
}

}  // namespace agilenn::testing
