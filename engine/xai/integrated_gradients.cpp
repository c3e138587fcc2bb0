#include "engine/xai/integrated_gradients.h"

#include <cmath>

#include "engine/autodiff/grad.h"
#include "engine/core/error.h"

namespace agilenn::xai {

namespace {

constexpr IgRule kRules[] = {IgRule::left_riemann, IgRule::right_riemann, IgRule::middle_riemann, IgRule::trapezoid,
                             IgRule::gauss_legendre};

}  // namespace

IgRule parse_ig_rule(const std::string& name) {
  for (IgRule r : kRules)
    if (name == ig_rule_name(r)) return r;
  AGILENN_THROW("unknown IG rule '" << name << "' (left, right, middle, trapezoid, gauss-legendre)");
}

const char* ig_rule_name(IgRule rule) {
  switch (rule) {
    case IgRule::left_riemann: return "left";
    case IgRule::right_riemann: return "right";
    case IgRule::middle_riemann: return "middle";
    case IgRule::trapezoid: return "trapezoid";
    case IgRule::gauss_legendre: return "gauss-legendre";
  }
  return "?";
}

std::vector<std::string> ig_rule_names() {
  std::vector<std::string> names;
  for (IgRule r : kRules) names.push_back(ig_rule_name(r));
  return names;
}

namespace {

// Gauss–Legendre nodes and weights on [-1, 1] by Newton's method on P_m.
void gauss_legendre(int m, std::vector<double>& x, std::vector<double>& w) {
  x.assign(static_cast<size_t>(m), 0.0);
  w.assign(static_cast<size_t>(m), 0.0);
  const double pi = std::acos(-1.0);
  for (int i = 0; i < m; ++i) {
    double z = std::cos(pi * (i + 0.75) / (m + 0.5)), dp = 0;
    for (int iter = 0; iter < 100; ++iter) {
      double p0 = 1, p1 = z;
      for (int k = 2; k <= m; ++k) {
        const double pk = ((2.0 * k - 1) * z * p1 - (k - 1.0) * p0) / k;
        p0 = p1;
        p1 = pk;
      }
      if (m == 1) p0 = 1, p1 = z;
      dp = m * (z * p1 - p0) / (z * z - 1);
      const double dz = p1 / dp;
      z -= dz;
      if (std::abs(dz) < 1e-15) break;
    }
    x[static_cast<size_t>(i)] = z;
    w[static_cast<size_t>(i)] = 2 / ((1 - z * z) * dp * dp);
  }
}

}  // namespace

void check_ig_options(const IgOptions& opt) {
  AGILENN_CHECK(opt.steps >= 1, "integrated gradients need at least 1 point");
  AGILENN_CHECK(opt.rule != IgRule::trapezoid || opt.steps >= 2, "the trapezoid rule needs at least 2 points");
}

Quadrature quadrature(IgRule rule, int m) {
  check_ig_options({.steps = m, .rule = rule});
  Quadrature q;
  const double dm = m;
  switch (rule) {
    case IgRule::left_riemann:
      for (int k = 0; k < m; ++k) q.alphas.push_back(k / dm), q.weights.push_back(1 / dm);
      break;
    case IgRule::right_riemann:
      for (int k = 1; k <= m; ++k) q.alphas.push_back(k / dm), q.weights.push_back(1 / dm);
      break;
    case IgRule::middle_riemann:
      for (int k = 0; k < m; ++k) q.alphas.push_back((k + 0.5) / dm), q.weights.push_back(1 / dm);
      break;
    case IgRule::trapezoid:
      for (int k = 0; k < m; ++k) {
        q.alphas.push_back(k / (dm - 1));
        q.weights.push_back((k == 0 || k == m - 1 ? 0.5 : 1.0) / (dm - 1));
      }
      break;
    case IgRule::gauss_legendre: {
      std::vector<double> x, w;
      gauss_legendre(m, x, w);
      for (int k = m - 1; k >= 0; --k) {  // ascending α
        q.alphas.push_back((x[static_cast<size_t>(k)] + 1) / 2);
        q.weights.push_back(w[static_cast<size_t>(k)] / 2);
      }
      break;
    }
  }
  return q;
}

namespace {

// Σ over the batch of per-sample cross-entropy, divided by the samples per point, so
// that its gradient w.r.t. each point is the gradient of that point's batch mean.
Value ce_sum(const NetFn& net, const Value& points, const Value& labels, double per_point) {
  return ops::sum(ops::cross_entropy(net(points), labels)) * (1.0 / per_point);
}

// Gradients of each point's mean CE (over `per_point` samples) w.r.t. the stacked points [n·B, h,w,C].
Value point_gradients(const NetFn& net, const Value& stacked, const Value& labels, int64_t batch, double per_point,
                      int64_t chunk) {
  const int64_t rows = stacked.dim(0);
  const int64_t points = rows / batch;
  std::vector<Value> label_rows(static_cast<size_t>(points), labels);
  Value all_labels = ops::concat(label_rows, 0);
  if (chunk <= 0 || chunk >= rows) return grad(ce_sum(net, stacked, all_labels, per_point), {stacked})[0];
  std::vector<Value> parts;
  for (int64_t begin = 0; begin < rows; begin += chunk) {
    const int64_t end = std::min(rows, begin + chunk);
    Value part = ops::slice_axis(stacked, 0, begin, end);
    Value part_labels = ops::slice_axis(all_labels, 0, begin, end);
    parts.push_back(grad(ce_sum(net, part, part_labels, per_point), {part})[0]);
  }
  return ops::concat(parts, 0);
}

}  // namespace

IgTerms integrated_gradients(const Value& f, const Value& labels, const NetFn& net, const IgOptions& opt,
                             const Value& baseline, const Value& zero_point_table) {
  AGILENN_CHECK(f.rank() == 4, "integrated_gradients needs features [B,h,w,C], got " << shape_str(f.shape()));
  AGILENN_CHECK(opt.replicas >= 1, "integrated_gradients over " << opt.replicas << " replicas");
  const int64_t batch = f.dim(0);
  const double per_point = static_cast<double>(batch * opt.replicas);
  const Quadrature q = quadrature(opt.rule, opt.steps);
  const bool zero_baseline = !baseline.valid();
  Value b = zero_baseline ? ops::fill(f.graph(), 0.0, {}, f.dtype()) : baseline;
  IgTerms out;
  out.delta = zero_baseline ? f : f - b;

  // Points that move with f go through the net together; points that do not (α = 0)
  // go separately or come from the per-class table.
  std::vector<Value> moving, fixed;
  std::vector<double> moving_w, fixed_w;
  Value table_term;
  for (size_t k = 0; k < q.alphas.size(); ++k) {
    const double alpha = q.alphas[k], w = q.weights[k];
    if (alpha == 0.0) {
      if (zero_baseline && zero_point_table.valid()) {
        Value g0 = ops::gather(zero_point_table, labels, 0) * (1.0 / per_point);
        table_term = table_term.valid() ? table_term + g0 * w : g0 * w;
      } else {
        fixed.push_back(zero_baseline ? ops::fill(f.graph(), 0.0, f.shape(), f.dtype()) : ops::broadcast_to(b, f.shape()));
        fixed_w.push_back(w);
      }
      continue;
    }
    moving.push_back(zero_baseline ? f * alpha : b + out.delta * alpha);
    moving_w.push_back(w);
  }

  Value a = table_term;
  auto accumulate = [&](const std::vector<Value>& points, const std::vector<double>& weights) {
    if (points.empty()) return;
    Value g = point_gradients(net, ops::concat(points, 0), labels, batch, per_point, opt.chunk);
    for (size_t k = 0; k < points.size(); ++k) {
      const auto begin = static_cast<int64_t>(k) * batch;
      Value term = ops::slice_axis(g, 0, begin, begin + batch) * weights[k];
      a = a.valid() ? a + term : term;
    }
  };
  accumulate(moving, moving_w);
  accumulate(fixed, fixed_w);
  out.a = a;
  return out;
}

Value zero_point_gradients(Graph& g, const NetFn& net, const Shape& feature_shape, int64_t classes, DType dtype) {
  AGILENN_CHECK(feature_shape.size() == 3, "feature shape is [h,w,C]");
  Shape s{classes};
  s.insert(s.end(), feature_shape.begin(), feature_shape.end());
  Value zeros = ops::fill(g, 0.0, s, dtype);
  Value total = ops::sum(ops::cross_entropy(net(zeros), ops::iota(g, classes, DType::i32)));
  return grad(total, {zeros})[0];
}

AttributionLosses attribution_losses(const IgTerms& ig, int64_t local_channels, double rho, bool fused) {
  Value stats = fused ? ops::attribution_stats(ig.delta, ig.a, local_channels)
                      : ops::attribution_stats_reference(ig.delta, ig.a, local_channels);
  const int64_t b = stats.dim(0);
  Value local = ops::reshape(ops::slice_axis(stats, 1, 0, 1), {b});
  Value total = ops::reshape(ops::slice_axis(stats, 1, 1, 2), {b});
  Value spread = ops::reshape(ops::slice_axis(stats, 1, 2, 3), {b});
  AttributionLosses out;
  // Both ratios divide by Σ_c P + ε: a sample whose attributions are all zero would
  // otherwise give 0/0 (relu passes the NaN on as a NaN gradient, which stops training).
  Value guarded_total = total + 1e-9;
  out.skewness = local / guarded_total;
  out.mean_skewness = ops::mean(out.skewness);
  out.skew_loss = ops::mean(ops::relu(rho - out.skewness));
  out.disorder_loss = ops::mean(ops::relu(spread / guarded_total));
  return out;
}

}  // namespace agilenn::xai
