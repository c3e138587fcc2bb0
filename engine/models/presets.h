// Model presets as data: one table each, no code paths.
#pragma once

#include <string>
#include <vector>

#include "engine/core/tensor.h"

namespace agilenn::models {

// MobileNetV2 stage: expand ratio t, output channels c, repeats n, first stride s.
struct InvertedResidualStage {
  int64_t t, c, n, s;
};

// EfficientNetV2 stage.
struct EfficientStage {
  enum Block { fused_mbconv, mbconv } block;
  int64_t expand, stride, channels, layers;
  double se_ratio;
};

struct ReferenceNetSpec {
  int64_t stem_channels, stem_stride;  // the stem exists only for pretraining on images
  std::vector<EfficientStage> stages;
  int64_t head_channels;
  double dropout;
  double bn_momentum, bn_eps;
};

struct AgileNNPreset {
  std::string name;
  int64_t input_size;           // images are resized to input_size × input_size
  int64_t fe_stride;            // first depthwise stride of the feature extractor
  int64_t fe_mid_channels;      // after the first separable conv
  int64_t feature_channels;     // C of the features f
  double split_ratio;           // K = round(split_ratio · C)
  int64_t num_centroids;
  int64_t rp_stem_channels;     // separable conv at the remote predictor's entry
  std::vector<InvertedResidualStage> rp_stages;
  int64_t rp_head_channels;
  double bn_momentum, bn_eps;
  ReferenceNetSpec reference;
  // Training defaults of the seed.
  double rho, lambda;

  int64_t local_channels() const;  // K
};

const AgileNNPreset& preset(const std::string& name);
std::vector<std::string> preset_names();

}  // namespace agilenn::models
