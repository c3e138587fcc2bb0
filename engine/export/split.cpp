#include "engine/export/split.h"

namespace agilenn::exporting {

std::unique_ptr<SplitGraphs> build_split(const models::AgileNNPreset& p, int64_t classes, int64_t batch) {
  auto s = std::make_unique<SplitGraphs>();
  Graph& g = s->graph;
  const nn::Scope root(g, s->params, false);
  const Shape fshape = models::feature_shape(p);
  const int64_t k = p.local_channels(), c = fshape[2], remote = c - k;
  const Value centroids = models::centroid_values(root.child("quantizer"), p);

  s->images = ops::leaf(g, "images", {batch, p.input_size, p.input_size, 3}, DType::f32);
  const Value f = models::feature_extractor(root.child("fe"), s->images, p);
  s->local_logits = models::local_predictor(root.child("lp"), ops::slice_axis(f, 3, 0, k), p, classes);
  const Value distance = ops::abs(ops::reshape(ops::slice_axis(f, 3, k, c), {batch, fshape[0], fshape[1], remote, 1}) -
                                  centroids);
  s->codes = ops::cast(ops::argmin(distance, 4), DType::u8);

  s->sent_codes = ops::leaf(g, "codes", {batch, fshape[0], fshape[1], remote}, DType::u8);
  s->sent_local_logits = ops::leaf(g, "local_logits", {batch, classes}, DType::f32);
  const Value quantized = ops::gather(centroids, ops::cast(s->sent_codes, DType::i32), 0);
  s->logits = models::mix_logits(root.child("mix"), s->sent_local_logits,
                                 models::remote_predictor(root.child("rp"), quantized, p, classes));
  return s;
}

}  // namespace agilenn::exporting
