// Pretrained EfficientNetV2-S weights as the reference net: a torchvision
// `efficientnet_v2_s` state dict or the Keras application's weights, both as safetensors,
// mapped tensor by tensor onto the engine's names and layouts (agilenn-train
// import-reference).
#pragma once

#include <string>
#include <vector>

#include "engine/models/presets.h"
#include "engine/nn/params.h"

namespace agilenn::models {

enum class WeightsFormat { torchvision, keras };
WeightsFormat parse_weights_format(const std::string& name);  // throws naming the choices
const char* weights_format_name(WeightsFormat f);

// The conventions the weights were trained with, which the engine must then follow:
// torchvision pads (k − 1)/2 on each side and normalises with ImageNet's mean and std;
// Keras pads "same" (TensorFlow's rule) and feeds 2x − 1 (data::Preprocess's names).
ops::Padding weights_padding(WeightsFormat f);
std::string weights_normalization(WeightsFormat f);

struct ImportOptions {
  WeightsFormat format = WeightsFormat::torchvision;
  int64_t classes = 10;          // of the engine's classifier
  bool keep_classifier = false;  // keep the file's classifier (it must have `classes` outputs)
  uint64_t seed = 1;             // initialisation of the new classifier
};

struct ImportedWeights {
  nn::TensorMap values;               // every tensor of the reference net ("ref." names), float32
  std::vector<std::string> replaced;  // the file's classifier tensors, when a new one replaces them
};

// Every parameter and batch-norm statistic of the reference net of `preset` (with its stem)
// from the safetensors file at `path`. Layouts are converted (OIHW → HWIO, depthwise filters
// to [KH,KW,1,C], dense [out,in] → [in,out]); the classifier is freshly initialised unless
// kept. Throws naming the tensor when one is missing, has the wrong shape, or is left over
// in the file (PyTorch's num_batches_tracked counters excepted).
ImportedWeights import_reference_weights(const std::string& path, const AgileNNPreset& preset,
                                         const ImportOptions& options);

}  // namespace agilenn::models
