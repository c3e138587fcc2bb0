// The device half as a full-integer int8 TFLite model in the conventions TFLite Micro's
// kernels expect: batch norms folded into the convolutions and the dense layer before them,
// per-channel symmetric int8 conv weights (per-tensor for the dense layer), int32 biases at
// the input scale × the weight scale, per-tensor asymmetric int8 activations with ranges
// calibrated on training images (the ReLU6 outputs take [0, 6]). The remote channels leave
// as uint8 centroid indices: a 256-entry table maps each int8 feature value to the code of
// the centroid nearest its real value (CAST to uint8, CAST to int32, GATHER); the local
// logits leave as int8 with their scale.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "engine/export/tflite.h"
#include "engine/models/presets.h"
#include "engine/nn/params.h"
#include "engine/runtime/backend.h"

namespace agilenn::exporting {

struct Int8Device {
  tflite::ModelBuilder model;   // the graph, and the tensors that are its interface
  int images = -1, local_logits = -1, codes = -1;
  std::string tflite;           // the model's bytes
  nlohmann::json quantization;  // the interface tensors' scales and zero points, for the manifest
};

// Folds the batch norms of the device half (feature extractor, local predictor), runs the
// folded float model to calibrate the activation ranges, and builds the int8 model.
class Int8DeviceExporter {
 public:
  Int8DeviceExporter(const nn::TensorMap& values, const models::AgileNNPreset& p, int64_t classes, int64_t batch,
                     Backend& backend);
  ~Int8DeviceExporter();

  // The folded float device half on a batch of preprocessed images [batch,S,S,3]: its local
  // logits [batch,classes]. The first `calibrate` images widen the calibrated ranges.
  Tensor run(const Tensor& images, int64_t calibrate);
  // The int8 model; `centroids` the quantizer's values [n] (float32).
  Int8Device build(const Tensor& centroids) const;

 private:
  struct Folded;
  std::unique_ptr<Folded> f_;
};

}  // namespace agilenn::exporting
