// The deployable split of a trained AgileNN model as engine graphs: the device half (feature
// extractor, channel split, local predictor, and the remote channels turned into quantizer
// codes) and the server half (codes to centroid values, remote predictor, the mix with the
// local logits). Together they compute the model's evaluation forward exactly.
#pragma once

#include "engine/models/agilenn.h"

namespace agilenn::exporting {

struct SplitGraphs {
  Graph graph;
  nn::ParamSet params;  // the AgileNN model's (fe, lp, quantizer, rp, mix); no reference net
  // Device half: images [B,S,S,3] (preprocessed) → local logits [B,classes] and the codes
  // uint8 [B,h,w,C−K] (the index of each remote value's nearest centroid, the first of equals).
  Value images, local_logits, codes;
  // Server half: codes and local logits, as the device sends them → logits [B,classes].
  Value sent_codes, sent_local_logits, logits;
};

std::unique_ptr<SplitGraphs> build_split(const models::AgileNNPreset& p, int64_t classes, int64_t batch);

}  // namespace agilenn::exporting
