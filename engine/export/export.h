// agilenn-export: a trained AgileNN checkpoint as the deployable split, written atomically
// to one directory: the device half and the server half as ONNX models, the device half
// also as an int8 TFLite model and its C array, the codec's C99 encoder and its tables, and
// manifest.json (shapes, preprocessing, split, centroids, codec, int8 quantization, the
// engine's commit, the checkpoint, sha256 of every artifact, and what was measured at
// export).
#pragma once

#include <iosfwd>
#include <string>

#include "engine/export/codec.h"
#include "engine/runtime/backend.h"

namespace agilenn::exporting {

struct ExportOptions {
  std::string checkpoint;
  std::string out;               // the directory to create (it must not exist)
  std::string data_dir;          // "" = the dataset's default place
  int64_t calibration = 10000;   // training images that fit the codec and the int8 ranges (0: all)
  int64_t test_limit = 0;        // test images measured (0: all)
  int64_t batch = 256;
  bool c99 = false;              // also write the device half as C99 (--target c99)
};

struct ExportSummary {
  int64_t test_images = 0;
  double engine_accuracy = 0;  // the checkpoint's evaluation forward
  double split_accuracy = 0;   // device half → codes → encode → decode → server half, in the engine
  CodeCost bits;               // per image
  double coded_bits = 0;       // per image, the encoder's streams
};

ExportSummary export_split(const ExportOptions& options, Backend& backend, std::ostream& log);

}  // namespace agilenn::exporting
