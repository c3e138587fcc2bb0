// Batched integrated gradients through a frozen reference net, as graph nodes (so the
// loss is differentiable through them), and the attribution losses of AgileNN.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "engine/ir/ops.h"

namespace agilenn::xai {

enum class IgRule { left_riemann, right_riemann, middle_riemann, trapezoid, gauss_legendre };

IgRule parse_ig_rule(const std::string& name);
const char* ig_rule_name(IgRule rule);
std::vector<std::string> ig_rule_names();  // every rule's, for command lines

// Points α_k in [0, 1] and weights w_k (summing to 1) of an m-point rule.
struct Quadrature {
  std::vector<double> alphas, weights;
};
Quadrature quadrature(IgRule rule, int m);

// Logits of the reference net for features [N,h,w,C]; built once per call.
using NetFn = std::function<Value(const Value& features)>;

struct IgOptions {
  int steps = 2;
  IgRule rule = IgRule::trapezoid;
  // Rows per reference-net batch; 0 puts all m·B interpolation points in one batch.
  int64_t chunk = 0;
  // Data parallel: CE_k is the mean over the global batch of this many ranks' batches, so
  // that the attributions (and the ε of the attribution losses beside them) are those of
  // one rank with the global batch.
  int64_t replicas = 1;
};

// Throws when the rule cannot be had with that many points.
void check_ig_options(const IgOptions& opt);

struct IgTerms {
  Value delta;  // f − b
  Value a;      // Σ_k w_k G_k, with G_k = ∂CE_k/∂F_k and CE_k the mean over the batch
};

// `baseline` may be empty (zeros). With a zero baseline, the α = 0 point's gradient
// depends only on the label: pass `zero_point_table` [classes,h,w,C] (per-class
// ∂ce/∂F at F = 0, see zero_point_gradients) to skip that work; without it, points that
// do not depend on f run through the net in a batch of their own, with no second-order path.
IgTerms integrated_gradients(const Value& f, const Value& labels, const NetFn& net, const IgOptions& opt,
                             const Value& baseline = {}, const Value& zero_point_table = {});

// Per-class gradients ∂ce(net(F), c)/∂F at F = 0, for c = 0..classes-1: [classes, h,w,C].
Value zero_point_gradients(Graph& g, const NetFn& net, const Shape& feature_shape, int64_t classes, DType dtype);

struct AttributionLosses {
  Value skewness;       // s per sample [B]: local importance / (total + 1e-9)
  Value mean_skewness;  // batch mean of s (the reported metric)
  Value skew_loss;      // mean_B max(ρ − s, 0)
  Value disorder_loss;  // mean_B max((max_{c≥K} I − min_{c<K} I) / (Σ_c P + 1e-9), 0)
};

// `fused` selects the attribution_stats op; otherwise its primitive decomposition.
AttributionLosses attribution_losses(const IgTerms& ig, int64_t local_channels, double rho, bool fused = true);

}  // namespace agilenn::xai
