#include "engine/autodiff/grad.h"

#include <algorithm>

#include "engine/autodiff/derivatives.h"
#include "engine/core/error.h"
#include "engine/ir/registry.h"
#include "engine/ir/shape_util.h"

namespace agilenn {
namespace {

// Brings a rule's gradient to the input's shape: rules may return any shape that
// broadcasts against the input (a scalar zero, or the output's broadcast shape).
Value fit_to_input(const Value& g, const Node& input) {
  if (g.shape() == input.shape) return g;
  const Shape full = broadcast_shapes(g.shape(), input.shape);
  return ops::sum_to(ops::broadcast_to(g, full), input.shape);
}

}  // namespace

namespace {

std::vector<Value> reverse_sweep(const Value& y, const std::vector<Value>& xs, const Value& seed, NodeId first) {
  register_derivatives();
  AGILENN_CHECK(y.valid(), "grad: y is empty");
  Graph& g = y.graph();
  AGILENN_CHECK(is_floating(y.dtype()), "grad: y must be floating-point, got " << dtype_name(y.dtype()));
  for (const Value& x : xs) AGILENN_CHECK(x.valid() && &x.graph() == &g, "grad: every x must belong to y's graph");
  Value cotangent = seed;
  if (cotangent.valid()) {
    AGILENN_CHECK(cotangent.shape() == y.shape() && cotangent.dtype() == y.dtype(),
                  "grad: seed " << shape_str(cotangent.shape()) << " does not match y " << shape_str(y.shape()));
  } else {
    AGILENN_CHECK(y.shape().empty(), "grad: y has shape " << shape_str(y.shape())
                                                          << "; give a seed for a non-scalar y");
    cotangent = ops::fill(g, 1.0, {}, y.dtype());
  }

  const auto last = static_cast<size_t>(y.id());
  // Nodes that depend differentiably on some x. Zero-derivative ops and non-float values
  // stop the dependence; ops without a vjp do not, so needing one is reported.
  std::vector<bool> depends(last + 1, false);
  for (const Value& x : xs)
    if (static_cast<size_t>(x.id()) <= last && is_floating(x.dtype())) depends[static_cast<size_t>(x.id())] = true;
  for (size_t id = static_cast<size_t>(std::max<NodeId>(first, 0)); id <= last; ++id) {
    if (depends[id]) continue;
    const Node& n = g.node(static_cast<NodeId>(id));
    if (n.op->derivative == Derivative::zero || !is_floating(n.dtype)) continue;
    depends[id] = std::any_of(n.inputs.begin(), n.inputs.end(),
                              [&](NodeId in) { return depends[static_cast<size_t>(in)]; });
  }

  std::vector<Value> acc(last + 1);
  acc[last] = cotangent;
  const auto lowest = static_cast<size_t>(std::max<NodeId>(first, 0));
  for (size_t id = last + 1; id-- > lowest;) {
    if (!acc[id].valid() || !depends[id]) continue;
    // Held across the appends below: graph.h keeps node references valid.
    const Node& n = g.node(static_cast<NodeId>(id));
    std::vector<bool> wanted(n.inputs.size());
    bool any = false;
    for (size_t i = 0; i < n.inputs.size(); ++i) {
      wanted[i] = depends[static_cast<size_t>(n.inputs[i])];
      any = any || wanted[i];
    }
    if (!any || n.op->derivative == Derivative::zero) continue;
    if (n.op->derivative == Derivative::undefined) {
      AGILENN_THROW("grad: op '" << n.op_name() << "' has no vjp"
                                 << (n.op->no_vjp_reason.empty() ? "" : " (" + n.op->no_vjp_reason + ")")
                                 << ", but the gradient must pass through " << g.describe(n.id));
    }
    VjpContext ctx{g, n, {}, Value(&g, n.id), acc[id], wanted};
    for (NodeId in : n.inputs) ctx.inputs.emplace_back(&g, in);
    std::vector<Value> gin = n.op->vjp(ctx);
    AGILENN_CHECK(gin.size() == n.inputs.size(), "grad: vjp of '" << n.op_name() << "' returned "
                                                                   << gin.size() << " gradients for "
                                                                   << n.inputs.size() << " inputs");
    for (size_t i = 0; i < n.inputs.size(); ++i) {
      if (!wanted[i] || !gin[i].valid()) continue;
      const Node& input = g.node(n.inputs[i]);
      Value gi = fit_to_input(gin[i], input);
      AGILENN_CHECK(gi.dtype() == input.dtype, "grad: vjp of '" << n.op_name() << "' gave a "
                                                                 << dtype_name(gi.dtype()) << " gradient for a "
                                                                 << dtype_name(input.dtype) << " input");
      Value& slot = acc[static_cast<size_t>(n.inputs[i])];
      slot = slot.valid() ? ops::add(slot, gi) : gi;
    }
  }

  std::vector<Value> out;
  out.reserve(xs.size());
  for (const Value& x : xs) {
    const auto id = static_cast<size_t>(x.id());
    if (id <= last && acc[id].valid() && depends[id]) out.push_back(acc[id]);
    else out.push_back(ops::fill(g, 0.0, x.shape(), x.dtype()));
  }
  return out;
}

}  // namespace

std::vector<Value> grad(const Value& y, const std::vector<Value>& xs, const Value& seed) {
  return reverse_sweep(y, xs, seed, 0);
}

std::vector<Value> partial_grad(const Value& y, const std::vector<Value>& xs, const Value& seed, NodeId first) {
  return reverse_sweep(y, xs, seed, first);
}

}  // namespace agilenn
