#include "engine/autodiff/fused_vjps.h"

#include "engine/autodiff/grad.h"
#include "engine/core/error.h"

namespace agilenn {

Value quantize_backward_reference(const Value& x, const Value& centroids, const Value& g, int64_t wrt) {
  AGILENN_CHECK(wrt == 0 || wrt == 1, "quantize_backward: wrt must be 0 (x) or 1 (centroids), got " << wrt);
  Graph& graph = x.graph();
  const auto first = static_cast<NodeId>(graph.size());
  // One node in both slots: the wanted slot reads a copy, so only its own partial is taken.
  Value xs = x, cs = centroids;
  if (x.id() == centroids.id()) (wrt == 0 ? xs : cs) = x + 0.0;
  const Value y = ops::quantize_soft(xs, cs);
  return partial_grad(y, {wrt == 0 ? xs : cs}, g, first)[0];
}

Value attribution_stats_backward_reference(const Value& delta, const Value& a, const Value& g,
                                           int64_t local_channels, int64_t wrt) {
  AGILENN_CHECK(wrt == 0 || wrt == 1, "attribution_stats_backward: wrt must be 0 (delta) or 1 (a), got " << wrt);
  Graph& graph = delta.graph();
  const auto first = static_cast<NodeId>(graph.size());
  // One node in both slots: the wanted slot reads a copy, so only its own partial is taken.
  Value d = delta, w = a;
  if (delta.id() == a.id()) (wrt == 0 ? d : w) = delta + 0.0;
  const Value y = ops::attribution_stats_reference(d, w, local_channels);
  return partial_grad(y, {wrt == 0 ? d : w}, g, first)[0];
}

}  // namespace agilenn
