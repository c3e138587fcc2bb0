// The fused backward ops' reference decompositions: the partial vjps of the fused forward
// ops' primitive decompositions (engine/ir/ops.h). They define what quantize_backward and
// attribution_stats_backward compute, and their own derivatives are these graphs' vjps.
#pragma once

#include "engine/ir/ops.h"

namespace agilenn {

// The partial vjp of ops::quantize_soft w.r.t. x (wrt = 0) or the centroids (wrt = 1),
// seeded by g: quantize_reference's vjp (its hard part is under stop_gradient).
Value quantize_backward_reference(const Value& x, const Value& centroids, const Value& g, int64_t wrt);

// The partial vjp of ops::attribution_stats_reference w.r.t. delta (wrt = 0) or a (wrt = 1),
// seeded by g [B,3].
Value attribution_stats_backward_reference(const Value& delta, const Value& a, const Value& g,
                                           int64_t local_channels, int64_t wrt);

}  // namespace agilenn
