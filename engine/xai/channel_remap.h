// The seed's optional channel remapping: rank the feature channels by importance over
// training data and permute the feature extractor's last layer so the most important
// channels come first (become the local ones).
#pragma once

#include <string>
#include <vector>

#include "engine/nn/params.h"

namespace agilenn::xai {

enum class RemapMethod { global_importance, topk_appearance };
RemapMethod parse_remap_method(const std::string& name);

// Accumulates per-sample channel importance P [B,C] over batches.
class ChannelImportance {
 public:
  ChannelImportance(int64_t channels, int64_t local_channels);
  void add(const Tensor& per_sample);  // [B,C]
  // Channel order, most important first: global_importance ranks by the mean of P over
  // samples (the seed's metric), topk_appearance by how often a channel is among a
  // sample's K most important (the seed's intent; its code indexed the batch axis).
  std::vector<int64_t> order(RemapMethod method) const;
  int64_t samples() const { return samples_; }

 private:
  int64_t channels_, local_;
  int64_t samples_ = 0;
  std::vector<double> importance_sum_, topk_count_;
};

// Permutes the output channels of the feature extractor's last layer: new channel i =
// old channel order[i]. The seed permutes the pointwise kernel alone; the batch norm
// after it is permuted too here, so the features are exactly permuted.
void permute_feature_channels(nn::TensorMap& values, const std::vector<int64_t>& order);

}  // namespace agilenn::xai
