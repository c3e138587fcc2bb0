#include "tests/gradcheck.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <sstream>

#include "engine/autodiff/grad.h"
#include "engine/core/error.h"

namespace agilenn::testing {

std::vector<Tensor> make_inputs(const OpCase& c, DType dtype, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<Tensor> out;
  for (const InputSpec& s : c.inputs) {
    if (s.is_int()) {
      std::uniform_int_distribution<int> pick(static_cast<int>(s.lo), static_cast<int>(s.hi));
      Tensor t = Tensor::zeros(s.shape, DType::i32);
      for (int64_t i = 0; i < t.numel(); ++i) t.set_item(i, pick(rng));
      out.push_back(t);
      continue;
    }
    std::uniform_real_distribution<double> u(s.lo, s.hi);
    Tensor t = Tensor::zeros(s.shape, DType::f64);
    for (int64_t i = 0; i < t.numel(); ++i) {
      double v = u(rng);
      for (int tries = 0; tries < 1000; ++tries) {
        const bool near = std::any_of(s.kinks.begin(), s.kinks.end(),
                                      [&](double k) { return std::abs(v - k) < s.kink_margin; });
        if (!near) break;
        v = u(rng);
      }
      t.set_item(i, v);
    }
    out.push_back(t);
  }
  if (c.adjust) c.adjust(out);
  for (Tensor& t : out)
    if (is_floating(t.dtype()) && dtype != DType::f64) t = t.to(dtype);
  return out;
}

double scaled_error(const Tensor& a, const Tensor& b, double rtol, double atol) {
  AGILENN_CHECK(a.shape() == b.shape(), "scaled_error: shapes " << shape_str(a.shape()) << " and "
                                                                << shape_str(b.shape()));
  double worst = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    const double x = a.item(i), y = b.item(i);
    if (std::isnan(x) || std::isnan(y)) return INFINITY;
    worst = std::max(worst, std::abs(x - y) / (atol + rtol * std::max(std::abs(x), std::abs(y))));
  }
  return worst;
}

namespace {

// Central differences in float64: h small enough that truncation (O(h²)) is far below
// the tolerance, large enough that round-off (O(ε/h)) is too.
constexpr double kStep = 1e-6;
constexpr double kRtol = 1e-5;

// The graph of one check: leaves for the inputs, probes and directions.
struct CheckGraph {
  Graph g;
  std::vector<Value> inputs;    // in case order
  std::vector<size_t> float_ix;  // indices of differentiable inputs
  Value loss;
  std::vector<Value> grads;     // d loss / d x, per float input
  std::vector<Value> hvps;      // d/dx <grads, v>, per float input
};

std::string input_name(size_t i) { return "x" + std::to_string(i); }

void build_check(CheckGraph& cg, const OpCase& c) {
  Graph& g = cg.g;
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    const InputSpec& s = c.inputs[i];
    cg.inputs.push_back(ops::leaf(g, input_name(i), s.shape, s.is_int() ? DType::i32 : DType::f64));
    if (!s.is_int()) cg.float_ix.push_back(i);
  }
  Value out = c.build(g, cg.inputs);
  AGILENN_CHECK(is_floating(out.dtype()), "case '" << c.name << "' must produce a floating-point value");
  Value probe = ops::leaf(g, "probe", out.shape(), DType::f64);
  cg.loss = ops::sum(out * probe);
  std::vector<Value> xs;
  for (size_t i : cg.float_ix) xs.push_back(cg.inputs[i]);
  cg.grads = grad(cg.loss, xs);
  Value inner;
  for (size_t k = 0; k < xs.size(); ++k) {
    Value v = ops::leaf(g, "v" + std::to_string(k), xs[k].shape(), DType::f64);
    Value term = ops::sum(cg.grads[k] * v);
    inner = inner.valid() ? inner + term : term;
  }
  cg.hvps = grad(inner, xs);
}

Tensor random_like(const Shape& s, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  Tensor t = Tensor::zeros(s, DType::f64);
  for (int64_t i = 0; i < t.numel(); ++i) t.set_item(i, u(rng));
  return t;
}

}  // namespace

GradcheckResult gradcheck(const OpCase& c, uint64_t seed) {
  CheckGraph cg;
  build_check(cg, c);
  std::mt19937_64 rng(seed ^ 0x5eedULL);
  Feeds feeds;
  std::vector<Tensor> xs = make_inputs(c, DType::f64, seed);
  for (size_t i = 0; i < xs.size(); ++i) feeds[input_name(i)] = xs[i];
  feeds["probe"] = random_like(cg.g.node(cg.g.find_leaf("probe")).shape, rng);
  std::vector<Tensor> directions;
  for (size_t k = 0; k < cg.float_ix.size(); ++k) {
    directions.push_back(random_like(xs[cg.float_ix[k]].shape(), rng));
    feeds["v" + std::to_string(k)] = directions.back();
  }

  std::vector<NodeId> grad_ids, hvp_ids;
  for (const Value& v : cg.grads) grad_ids.push_back(v.id());
  for (const Value& v : cg.hvps) hvp_ids.push_back(v.id());
  Executor loss_ex(cg.g, compile(cg.g, {cg.loss.id()}), cpu_backend());
  Executor grad_ex(cg.g, compile(cg.g, grad_ids), cpu_backend());
  Executor hvp_ex(cg.g, compile(cg.g, hvp_ids), cpu_backend());
  verify_memory_plan(hvp_ex.plan().memory);

  GradcheckResult result;
  const std::vector<Tensor> analytic = grad_ex.run(feeds);
  const std::vector<Tensor> hvp = hvp_ex.run(feeds);

  // First order: every element of every floating input.
  for (size_t k = 0; k < cg.float_ix.size(); ++k) {
    const std::string name = input_name(cg.float_ix[k]);
    Tensor x = feeds[name].clone();
    Tensor numeric = Tensor::zeros(x.shape(), DType::f64);
    Feeds f = feeds;
    for (int64_t i = 0; i < x.numel(); ++i) {
      const double x0 = x.item(i);
      Tensor xp = x.clone(), xm = x.clone();
      xp.set_item(i, x0 + kStep);
      xm.set_item(i, x0 - kStep);
      f[name] = xp;
      const double lp = loss_ex.run(f)[0].item(0);
      f[name] = xm;
      const double lm = loss_ex.run(f)[0].item(0);
      numeric.set_item(i, (lp - lm) / (2 * kStep));
    }
    double scale = 0;
    for (double v : numeric.to_vector()) scale = std::max(scale, std::abs(v));
    const double err = scaled_error(analytic[k], numeric, kRtol, kRtol * (1.0 + scale));
    if (err > result.first_order_error) {
      result.first_order_error = err;
      result.worst = "d loss / d " + name;
    }
  }

  // Second order: the gradient's directional derivative along v, against the HVP.
  Feeds fp = feeds, fm = feeds;
  for (size_t k = 0; k < cg.float_ix.size(); ++k) {
    const std::string name = input_name(cg.float_ix[k]);
    Tensor xp = feeds[name].clone(), xm = feeds[name].clone();
    for (int64_t i = 0; i < xp.numel(); ++i) {
      xp.set_item(i, xp.item(i) + kStep * directions[k].item(i));
      xm.set_item(i, xm.item(i) - kStep * directions[k].item(i));
    }
    fp[name] = xp;
    fm[name] = xm;
  }
  const std::vector<Tensor> gp = grad_ex.run(fp), gm = grad_ex.run(fm);
  for (size_t k = 0; k < cg.float_ix.size(); ++k) {
    Tensor numeric = Tensor::zeros(gp[k].shape(), DType::f64);
    double scale = 0;
    for (int64_t i = 0; i < numeric.numel(); ++i) {
      numeric.set_item(i, (gp[k].item(i) - gm[k].item(i)) / (2 * kStep));
      scale = std::max(scale, std::abs(numeric.item(i)));
    }
    // The gradient's own magnitude bounds the round-off of its difference quotient.
    double gscale = 0;
    for (double v : analytic[k].to_vector()) gscale = std::max(gscale, std::abs(v));
    const double err = scaled_error(hvp[k], numeric, 10 * kRtol, 10 * kRtol * (1.0 + scale + gscale));
    if (err > result.second_order_error) {
      result.second_order_error = err;
      if (err > result.first_order_error) result.worst = "Hessian-vector product for " + input_name(cg.float_ix[k]);
    }
  }
  return result;
}

}  // namespace agilenn::testing
