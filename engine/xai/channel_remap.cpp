#include "engine/xai/channel_remap.h"

#include <algorithm>
#include <numeric>

#include "engine/core/error.h"

namespace agilenn::xai {

RemapMethod parse_remap_method(const std::string& name) {
  if (name == "global_importance") return RemapMethod::global_importance;
  if (name == "topk_appearance") return RemapMethod::topk_appearance;
  AGILENN_THROW("unknown channel remapping '" << name << "' (global_importance, topk_appearance)");
}

ChannelImportance::ChannelImportance(int64_t channels, int64_t local_channels)
    : channels_(channels), local_(local_channels), importance_sum_(static_cast<size_t>(channels), 0.0),
      topk_count_(static_cast<size_t>(channels), 0.0) {
  AGILENN_CHECK(local_channels > 0 && local_channels < channels, "bad split " << local_channels << " of " << channels);
}

void ChannelImportance::add(const Tensor& p) {
  AGILENN_CHECK(p.rank() == 2 && p.dim(1) == channels_,
                "channel importance must be [B," << channels_ << "], got " << shape_str(p.shape()));
  std::vector<int64_t> idx(static_cast<size_t>(channels_));
  for (int64_t b = 0; b < p.dim(0); ++b) {
    for (int64_t c = 0; c < channels_; ++c) importance_sum_[static_cast<size_t>(c)] += p.item(b * channels_ + c);
    std::iota(idx.begin(), idx.end(), 0);
    std::stable_sort(idx.begin(), idx.end(),
                     [&](int64_t x, int64_t y) { return p.item(b * channels_ + x) > p.item(b * channels_ + y); });
    for (int64_t k = 0; k < local_; ++k) topk_count_[static_cast<size_t>(idx[static_cast<size_t>(k)])] += 1;
    ++samples_;
  }
}

std::vector<int64_t> ChannelImportance::order(RemapMethod method) const {
  AGILENN_CHECK(samples_ > 0, "no importance measured yet");
  const std::vector<double>& score = method == RemapMethod::global_importance ? importance_sum_ : topk_count_;
  std::vector<int64_t> idx(static_cast<size_t>(channels_));
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(),
                   [&](int64_t x, int64_t y) { return score[static_cast<size_t>(x)] > score[static_cast<size_t>(y)]; });
  return idx;
}

namespace {

// Reorders the last axis of t.
void permute_last_axis(Tensor& t, const std::vector<int64_t>& order) {
  const int64_t c = t.dim(t.rank() - 1), rows = t.numel() / c;
  AGILENN_CHECK(static_cast<int64_t>(order.size()) == c, "order has " << order.size() << " entries for " << c << " channels");
  Tensor out = t.clone();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < c; ++i) out.set_item(r * c + i, t.item(r * c + order[static_cast<size_t>(i)]));
  t = out;
}

}  // namespace

void permute_feature_channels(nn::TensorMap& values, const std::vector<int64_t>& order) {
  std::vector<int64_t> sorted = order;
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 0; i < sorted.size(); ++i)
    AGILENN_CHECK(sorted[i] == static_cast<int64_t>(i), "channel order is not a permutation");
  for (const char* name : {"fe.sep2.pointwise.weight", "fe.bn2.gamma", "fe.bn2.beta", "fe.bn2.moving_mean",
                           "fe.bn2.moving_var"}) {
    auto it = values.find(name);
    AGILENN_CHECK(it != values.end(), "channel remapping: no tensor '" << name << "'");
    permute_last_axis(it->second, order);
  }
}

}  // namespace agilenn::xai
