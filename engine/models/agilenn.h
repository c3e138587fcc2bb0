// AgileNN (feature extractor, local and remote predictors, quantizer, learned mix) and
// its EfficientNetV2-style reference net, built from a preset.
#pragma once

#include "engine/models/presets.h"
#include "engine/nn/layers.h"

namespace agilenn::models {

struct AgileNNOutputs {
  Value features;       // f [B,h,w,C]
  Value local_logits;   // LP(f[..., :K])
  Value remote_logits;  // RP(Q(f[..., K:]))
  Value quantized;      // Q(f[..., K:])
  Value logits;         // softmax(v)_0 · local + softmax(v)_1 · remote
};

// [h, w, C] of the features f for one image of the preset.
Shape feature_shape(const AgileNNPreset& p);

// How the remote features are quantized: the seed's straight-through estimator (hard
// forward, soft gradients), or the soft path alone (smooth; for gradient checks).
enum class QuantizerMode { straight_through, soft };

// Scopes: fe, lp, rp, quantizer, mix.
Value feature_extractor(const nn::Scope& s, const Value& images, const AgileNNPreset& p);
AgileNNOutputs agilenn_heads(const nn::Scope& s, const Value& features, const AgileNNPreset& p, int64_t classes,
                             QuantizerMode quantizer = QuantizerMode::straight_through);
AgileNNOutputs agilenn_forward(const nn::Scope& s, const Value& images, const AgileNNPreset& p, int64_t classes,
                               QuantizerMode quantizer = QuantizerMode::straight_through);
// 6·sigmoid(raw centroids): inside the ReLU6 range of the features.
Value centroid_values(const nn::Scope& quantizer_scope, const AgileNNPreset& p);
// The parts agilenn_heads joins (scopes lp, rp, mix), also built apart for the deployable
// split (engine/export/split.h): the local predictor on the kept channels, the remote
// predictor on the quantized rest, and the learned mix softmax(v)_0 · local + softmax(v)_1 · remote.
Value local_predictor(const nn::Scope& lp, const Value& local, const AgileNNPreset& p, int64_t classes);
Value remote_predictor(const nn::Scope& rp, const Value& quantized, const AgileNNPreset& p, int64_t classes);
Value mix_logits(const nn::Scope& mix, const Value& local_logits, const Value& remote_logits);

// The reference net body on features [N,h,w,C] (no stem); scope "ref".
Value reference_body(const nn::Scope& s, const Value& features, const AgileNNPreset& p, int64_t classes,
                     const Value& dropout_counter = {});
// The full reference net on images, with its stem, for pretraining.
Value reference_net(const nn::Scope& s, const Value& images, const AgileNNPreset& p, int64_t classes,
                    const Value& dropout_counter = {});

}  // namespace agilenn::models
