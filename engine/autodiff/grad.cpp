#include "engine/autodiff/grad.h"

#include <algorithm>
#include <map>
#include <optional>

#include "engine/autodiff/derivatives.h"
#include "engine/core/error.h"
#include "engine/ir/registry.h"
#include "engine/ir/shape_util.h"

namespace agilenn {
namespace {

// Sums of gradients over the axes they were broadcast along, taken by linearity where
// the graph already holds what they need. A sum of a linear combination is the same
// combination of its terms' sums; a term constant along the summed axes (a per-channel
// vector, broadcast) sums to itself times the count, and another term may be a value
// whose sum the graph already has. When every term is one or the other, the sum needs no
// pass over the full-size gradient, and that gradient, read only by its next consumer
// then, fuses into it. The case met: a batch norm's mean, whose gradient is minus the sum
// of x - mean's gradient, a combination of the incoming gradient (summed for beta) and
// x - mean (x summed for the mean itself).
class LinearSums {
 public:
  explicit LinearSums(Graph& g) : g_(g) {}

  // g summed over `axes` (normalised) with kept dimensions, or an invalid Value where some
  // term is neither constant along them nor already summed. The combination is walked once
  // to see that every term is known before any node is made, so a failed attempt leaves
  // nothing in the graph.
  Value sum(const Value& g, const std::vector<int64_t>& axes) {
    index_sums();
    full_ = g.shape();
    axes_ = axes;
    kept_ = full_;
    count_ = 1;
    for (int64_t a : axes) {
      count_ *= static_cast<double>(full_[static_cast<size_t>(a)]);
      kept_[static_cast<size_t>(a)] = 1;
    }
    terms_ = 0;
    if (!term_sum(g, false)) return {};
    terms_ = 0;
    return ops::broadcast_to(*term_sum(g, true), kept_);  // a sum of constants alone may lack some dimensions
  }

 private:
  static constexpr int kMaxTerms = 16;  // a combination longer than this is summed in a pass

  // Records the graph's sums made since the last call, by input and normalised axes.
  void index_sums() {
    for (; indexed_ < g_.size(); ++indexed_) {
      const Node& n = g_.node(static_cast<NodeId>(indexed_));
      if (n.op_name() != "sum") continue;
      const Shape& in = g_.node(n.inputs[0]).shape;
      sums_.emplace(std::make_pair(n.inputs[0], normalize_axes(n.attrs.ints("axes"), in.size())), n.id);
    }
  }

  // The value v stands for along the summed axes where it is constant along them
  // (broadcast against the full shape), or an invalid Value.
  Value constant(const Value& v) const {
    const Node& n = v.node();
    if (n.op_name() == "broadcast_to" && n.shape == full_) return constant(Value(&g_, n.inputs[0]));
    if (n.shape.size() > full_.size()) return {};
    const size_t lead = full_.size() - n.shape.size();
    for (int64_t a : axes_) {
      const auto d = static_cast<size_t>(a);
      if (d >= lead && n.shape[d - lead] != 1) return {};
    }
    return v;
  }

  // The sum of a full-size term, or of a constant one, built where `build` (else an empty
  // Value stands for it); nullopt where neither is known.
  std::optional<Value> term_sum(const Value& v, bool build) {
    if (++terms_ > kMaxTerms) return std::nullopt;
    const auto made = [&](auto make) -> std::optional<Value> { return build ? make() : Value(); };
    if (const Value c = constant(v); c.valid()) return made([&] { return c * count_; });
    if (v.shape() != full_) return std::nullopt;
    if (auto it = sums_.find({v.id(), axes_}); it != sums_.end())
      return made([&] { return ops::reshape(Value(&g_, it->second), kept_); });
    const Node& n = v.node();
    const std::string& op = n.op_name();
    const auto operand = [&](size_t i) { return Value(&g_, n.inputs[i]); };
    if (op == "neg") {
      const auto a = term_sum(operand(0), build);
      return a ? made([&] { return -*a; }) : a;
    }
    if (op == "add" || op == "sub") {
      const auto a = term_sum(operand(0), build);
      const auto b = a ? term_sum(operand(1), build) : a;
      if (!b) return b;
      return made([&] { return op == "add" ? *a + *b : *a - *b; });
    }
    if (op == "mul" || op == "div") {  // by a factor constant along the axes
      for (size_t i : {size_t{1}, size_t{0}}) {
        if (op == "div" && i == 0) break;
        const Value c = constant(operand(i));
        if (!c.valid()) continue;
        const auto a = term_sum(operand(1 - i), build);
        if (!a) return a;
        return made([&] { return op == "mul" ? *a * c : ops::div(*a, c); });
      }
    }
    return std::nullopt;
  }

  Graph& g_;
  size_t indexed_ = 0;
  std::map<std::pair<NodeId, std::vector<int64_t>>, NodeId> sums_;
  Shape full_, kept_;  // the summed value's shape, and the sum's with kept dimensions
  std::vector<int64_t> axes_;
  double count_ = 1;
  int terms_ = 0;
};

// Brings a rule's gradient to the input's shape: rules may return any shape that
// broadcasts against the input (a scalar zero, or the output's broadcast shape).
Value fit_to_input(const Value& g, const Node& input, LinearSums& linear) {
  if (g.shape() == input.shape) return g;
  const Shape full = broadcast_shapes(g.shape(), input.shape);
  if (g.shape() == full) {  // the axes sum_to sums: leading ones, and those input has at 1
    const size_t lead = full.size() - input.shape.size();
    std::vector<int64_t> axes;
    for (size_t d = 0; d < full.size(); ++d)
      if (d < lead || (input.shape[d - lead] == 1 && full[d] != 1)) axes.push_back(static_cast<int64_t>(d));
    if (const Value s = linear.sum(g, axes); s.valid()) return ops::reshape(s, input.shape);
  }
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
  LinearSums linear(g);
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
      Value gi = fit_to_input(gin[i], input, linear);
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
