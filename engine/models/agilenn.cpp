#include "engine/models/agilenn.h"

#include "engine/core/error.h"

namespace agilenn::models {
namespace {

nn::BatchNormOptions agilenn_bn(const AgileNNPreset& p) { return {p.bn_momentum, p.bn_eps}; }
nn::BatchNormOptions reference_bn(const AgileNNPreset& p) { return {p.reference.bn_momentum, p.reference.bn_eps}; }

}  // namespace

Shape feature_shape(const AgileNNPreset& p) {
  const int64_t side = (p.input_size + p.fe_stride - 1) / p.fe_stride;  // "same" padding
  return {side, side, p.feature_channels};
}

Value feature_extractor(const nn::Scope& s, const Value& images, const AgileNNPreset& p) {
  const nn::BatchNormOptions bn = agilenn_bn(p);
  Value h = nn::separable_conv2d(s.child("sep1"), images, p.fe_mid_channels, 3, p.fe_stride);
  h = ops::relu6(nn::batch_norm(s.child("bn1"), h, bn));
  h = nn::separable_conv2d(s.child("sep2"), h, p.feature_channels, 3, 1);
  return ops::relu6(nn::batch_norm(s.child("bn2"), h, bn));
}

Value centroid_values(const nn::Scope& s, const AgileNNPreset& p) {
  Value raw = s.parameter("centroids", {p.num_centroids},
                          p.centroid_init == CentroidInit::spread       ? nn::Init::LogitGrid()
                          : p.centroid_init == CentroidInit::spread_low ? nn::Init::LogitGrid(2)
                                                                        : nn::Init::Normal(0.05));
  return ops::sigmoid(raw) * 6.0;
}

Value local_predictor(const nn::Scope& lp, const Value& local, const AgileNNPreset& p, int64_t classes) {
  return nn::batch_norm(lp.child("bn"), nn::dense(lp.child("dense"), ops::global_avg_pool(local), classes),
                        agilenn_bn(p));
}

Value remote_predictor(const nn::Scope& rp, const Value& quantized, const AgileNNPreset& p, int64_t classes) {
  const nn::BatchNormOptions bn = agilenn_bn(p);
  Value h = nn::separable_conv2d(rp.child("stem"), quantized, p.rp_stem_channels, 3, 1);
  for (size_t i = 0; i < p.rp_stages.size(); ++i) {
    const InvertedResidualStage& st = p.rp_stages[i];
    for (int64_t j = 0; j < st.n; ++j)
      h = nn::inverted_residual(rp.child("stage" + std::to_string(i)).child("block" + std::to_string(j)), h, st.t, st.c,
                                j == 0 ? st.s : 1, bn);
  }
  h = ops::relu6(nn::batch_norm(rp.child("head_bn"), nn::conv2d(rp.child("head"), h, p.rp_head_channels, 1), bn));
  return nn::batch_norm(rp.child("bn"), nn::dense(rp.child("dense"), ops::global_avg_pool(h), classes), bn);
}

Value mix_logits(const nn::Scope& mix, const Value& local_logits, const Value& remote_logits) {
  Value w = ops::softmax(mix.parameter("v", {2}, nn::Init::Normal(0.05)), 0);
  return local_logits * ops::slice_axis(w, 0, 0, 1) + remote_logits * ops::slice_axis(w, 0, 1, 2);
}

AgileNNOutputs agilenn_heads(const nn::Scope& s, const Value& f, const AgileNNPreset& p, int64_t classes,
                             QuantizerMode quantizer) {
  const int64_t k = p.local_channels(), c = f.dim(-1);
  AGILENN_CHECK(k > 0 && k < c, "split ratio " << p.split_ratio << " leaves no local or no remote channel of " << c);
  AgileNNOutputs out;
  out.features = f;
  out.local_logits = local_predictor(s.child("lp"), ops::slice_axis(f, 3, 0, k), p, classes);
  Value remote = ops::slice_axis(f, 3, k, c), centroids = centroid_values(s.child("quantizer"), p);
  out.quantized = quantizer == QuantizerMode::straight_through ? ops::quantize(remote, centroids)
                                                                : ops::quantize_soft(remote, centroids);
  out.remote_logits = remote_predictor(s.child("rp"), out.quantized, p, classes);
  out.logits = mix_logits(s.child("mix"), out.local_logits, out.remote_logits);
  return out;
}

AgileNNOutputs agilenn_forward(const nn::Scope& s, const Value& images, const AgileNNPreset& p, int64_t classes,
                               QuantizerMode quantizer) {
  return agilenn_heads(s, feature_extractor(s.child("fe"), images, p), p, classes, quantizer);
}

Value reference_body(const nn::Scope& scope, const Value& features, const AgileNNPreset& p, int64_t classes,
                     const Value& dropout_counter) {
  const nn::Scope s = scope.with_conv_padding(p.reference.padding);
  const nn::BatchNormOptions bn = reference_bn(p);
  const ReferenceNetSpec& r = p.reference;
  Value h = features;
  for (size_t i = 0; i < r.stages.size(); ++i) {
    const EfficientStage& st = r.stages[i];
    for (int64_t j = 0; j < st.layers; ++j) {
      const nn::Scope b = s.child("stage" + std::to_string(i)).child("block" + std::to_string(j));
      const int64_t stride = j == 0 ? st.stride : 1;
      h = st.block == EfficientStage::fused_mbconv ? nn::fused_mbconv(b, h, st.expand, st.channels, stride, st.se_ratio, bn)
                                                   : nn::mbconv(b, h, st.expand, st.channels, stride, st.se_ratio, bn);
    }
  }
  h = ops::silu(nn::batch_norm(s.child("head_bn"), nn::conv2d(s.child("head"), h, r.head_channels, 1), bn));
  h = ops::global_avg_pool(h);
  if (s.training() && r.dropout > 0) {
    AGILENN_CHECK(dropout_counter.valid(), "reference net in training mode needs a dropout counter");
    h = ops::dropout(h, dropout_counter, r.dropout, 0x5eed0001ULL);
  }
  return nn::dense(s.child("classifier"), h, classes);
}

Value reference_net(const nn::Scope& s, const Value& images, const AgileNNPreset& p, int64_t classes,
                    const Value& dropout_counter) {
  const ReferenceNetSpec& r = p.reference;
  Value h = nn::conv2d(s.with_conv_padding(r.padding).child("stem"), images, r.stem_channels, 3, r.stem_stride);
  h = ops::silu(nn::batch_norm(s.child("stem_bn"), h, reference_bn(p)));
  return reference_body(s, h, p, classes, dropout_counter);
}

}  // namespace agilenn::models
