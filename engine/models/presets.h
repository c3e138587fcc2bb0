// Model presets as data: one table each, no code paths.
#pragma once

#include <string>
#include <vector>

#include "engine/ir/ops.h"

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
  // How its convolutions pad: same (the seed's Keras rule), or symmetric for weights
  // imported from PyTorch (a checkpoint records which; see engine/models/import_reference.h).
  ops::Padding padding = ops::Padding::same;
};

// Initial raw centroids (the quantizer's values are 6·sigmoid(raw)): the seed's N(0, 0.05²),
// which puts all of them near 3 (the quantizer's output is then nearly constant), or
// spread: raw_j = logit((j + ½) / n), values evenly over (0, 6).
enum class CentroidInit { seed_normal, spread, spread_low };

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
  CentroidInit centroid_init;
  // Evaluation: the batch-norm statistics are recomputed over this many training batches
  // before each evaluation (see engine/train/bn_statistics.h); 0 keeps the moving
  // averages, as the seed.
  int64_t eval_bn_batches;
  ReferenceNetSpec reference;
  // The attribution losses: target skewness ρ and the classification loss's weight λ
  // (the seed's; agilenn-train --rho, --lambda).
  double rho, lambda;
  // Recipe defaults of agilenn-train (each can be overridden on its command line).
  double lr;            // AgileNN: SGDW's initial learning rate (cosine to 0), the seed's 0.1
  double reference_lr;  // reference-net pretraining: Adam's initial learning rate (cosine to 1% of it)
  bool augment;         // training images flipped and padded-and-cropped per dataset, as the seed's
  // AgileNN: the seed's channel remapping before training ("" none, global_importance,
  // topk_appearance), ranked over this many training batches (0: one pass over the data).
  const char* channel_remapping;
  int64_t channel_remapping_batches;

  int64_t local_channels() const;  // K
};

const AgileNNPreset& preset(const std::string& name);
std::vector<std::string> preset_names();

}  // namespace agilenn::models
