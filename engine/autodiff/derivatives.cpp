// The derivative table: one vjp per op, one formula per input, written in registry ops
// so every gradient is itself differentiable. g is the incoming gradient, y the op's
// output. Rules may return gradients of a broadcastable shape: the driver (grad.cpp)
// reduces them to the input's shape, accumulates, and skips inputs nobody needs.
#include <numeric>

#include "engine/autodiff/derivatives.h"

#include "engine/autodiff/fused_vjps.h"
#include "engine/autodiff/grad.h"
#include "engine/core/error.h"
#include "engine/ir/ops.h"
#include "engine/ir/registry.h"
#include "engine/ir/shape_util.h"

namespace agilenn {
namespace {

using namespace ops;
using Grads = std::vector<Value>;
using C = const VjpContext&;

Value zero(const Value& like) { return scalar_like(like, 0.0); }

// g with the reduced axes re-inserted as size 1, broadcast back to the input's shape.
Value unreduce(C c, const Value& g) {
  const Value& x = c.inputs[0];
  const auto axes = normalize_axes(c.node.attrs.ints("axes"), x.rank());
  return broadcast_to(reshape(g, reduced_shape(x.shape(), axes, true)), x.shape());
}

// Gradient of max/min reductions: shared equally among the elements that attain it.
Value extremum_grad(C c) {
  const Value& x = c.inputs[0];
  const auto axes = normalize_axes(c.node.attrs.ints("axes"), x.rank());
  Value y = broadcast_to(reshape(c.output, reduced_shape(x.shape(), axes, true)), x.shape());
  Value hit = cast(equal(x, y), x.dtype());
  Value count = sum(hit, axes, true);
  return unreduce(c, c.grad_output) * hit / count;
}

std::vector<int64_t> inverse_permutation(const std::vector<int64_t>& perm) {
  std::vector<int64_t> inv(perm.size());
  for (size_t i = 0; i < perm.size(); ++i) inv[static_cast<size_t>(perm[i])] = static_cast<int64_t>(i);
  return inv;
}

Attrs conv_attrs(const Attrs& a) {
  return Attrs{{"stride", a.ints("stride")},
               {"dilation", a.ints("dilation")},
               {"groups", a.i("groups")},
               {"pads", a.ints("pads")}};
}

// The vjp of a fused (backward) op: the partial vjp of its reference decomposition, built
// on the spot, so the fused op and its decomposition agree to every order by construction.
template <class Decompose>
Grads through_decomposition(C c, Decompose&& decompose) {
  const auto first = static_cast<NodeId>(c.graph.size());
  const Value decomposed = decompose();
  // A node passed in two slots gets the sum of both partials once, in its first slot:
  // the sweep over the decomposition already follows both uses.
  std::vector<Value> wanted;
  std::vector<size_t> slot_of;
  Grads out(c.inputs.size());
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    bool repeated = false;
    for (size_t j = 0; j < i; ++j) repeated = repeated || c.inputs[j].id() == c.inputs[i].id();
    if (!c.needs(i) || repeated) continue;
    wanted.push_back(c.inputs[i]);
    slot_of.push_back(i);
  }
  const std::vector<Value> gs = partial_grad(decomposed, wanted, c.grad_output, first);
  for (size_t k = 0; k < gs.size(); ++k) out[slot_of[k]] = gs[k];
  return out;
}

struct Entry {
  const char* op;
  VjpRule rule;
};

// clang-format off
const Entry kDerivatives[] = {
  {"neg",     [](C c) -> Grads { return {-c.grad_output}; }},
  // Every rank's output is the same sum, so each input's gradient sums every rank's g.
  {"all_reduce_sum", [](C c) -> Grads { return {all_reduce_sum(c.grad_output)}; }},
  {"abs",     [](C c) -> Grads { return {c.grad_output * sign(c.inputs[0])}; }},
  {"exp",     [](C c) -> Grads { return {c.grad_output * c.output}; }},
  {"log",     [](C c) -> Grads { return {c.grad_output / c.inputs[0]}; }},
  {"sqrt",    [](C c) -> Grads { return {c.grad_output * 0.5 / c.output}; }},
  {"rsqrt",   [](C c) -> Grads { return {c.grad_output * -0.5 * c.output / c.inputs[0]}; }},
  {"sigmoid", [](C c) -> Grads { return {c.grad_output * c.output * (1.0 - c.output)}; }},
  {"tanh",    [](C c) -> Grads { return {c.grad_output * (1.0 - c.output * c.output)}; }},
  {"clamp",   [](C c) -> Grads {
     return {clamp_grad(c.inputs[0], c.grad_output, c.node.attrs.f("lo"), c.node.attrs.f("hi"))}; }},
  // Linear in g; the mask's derivative in x is zero almost everywhere.
  {"clamp_grad", [](C c) -> Grads {
     return {Value(), clamp_grad(c.inputs[0], c.grad_output, c.node.attrs.f("lo"), c.node.attrs.f("hi"))}; }},

  {"add", [](C c) -> Grads { return {c.grad_output, c.grad_output}; }},
  {"sub", [](C c) -> Grads { return {c.grad_output, -c.grad_output}; }},
  {"mul", [](C c) -> Grads { return {c.grad_output * c.inputs[1], c.grad_output * c.inputs[0]}; }},
  {"div", [](C c) -> Grads {
     return {c.grad_output / c.inputs[1], -c.grad_output * c.output / c.inputs[1]}; }},
  {"maximum", [](C c) -> Grads {
     Value a_wins = greater_equal(c.inputs[0], c.inputs[1]);
     Value g = c.grad_output, z = zero(g);
     return {where(a_wins, g, z), where(a_wins, z, g)}; }},
  {"minimum", [](C c) -> Grads {
     Value a_wins = less_equal(c.inputs[0], c.inputs[1]);
     Value g = c.grad_output, z = zero(g);
     return {where(a_wins, g, z), where(a_wins, z, g)}; }},
  {"where", [](C c) -> Grads {
     Value g = c.grad_output, z = zero(g);
     return {Value(), where(c.inputs[0], g, z), where(c.inputs[0], z, g)}; }},
  {"cast", [](C c) -> Grads {
     if (!is_floating(c.inputs[0].dtype()) || !is_floating(c.output.dtype())) return {Value()};
     return {cast(c.grad_output, c.inputs[0].dtype())}; }},

  {"sum", [](C c) -> Grads { return {unreduce(c, c.grad_output)}; }},
  {"max", [](C c) -> Grads { return {extremum_grad(c)}; }},
  {"min", [](C c) -> Grads { return {extremum_grad(c)}; }},

  {"broadcast_to", [](C c) -> Grads { return {sum_to(c.grad_output, c.inputs[0].shape())}; }},
  {"reshape",   [](C c) -> Grads { return {reshape(c.grad_output, c.inputs[0].shape())}; }},
  {"transpose", [](C c) -> Grads {
     return {transpose(c.grad_output, inverse_permutation(c.node.attrs.ints("perm")))}; }},
  {"slice", [](C c) -> Grads {
     const Shape& xs = c.inputs[0].shape();
     std::vector<int64_t> after(xs.size());
     for (size_t i = 0; i < xs.size(); ++i) after[i] = xs[i] - c.node.attrs.ints("end")[i];
     return {pad(c.grad_output, c.node.attrs.ints("begin"), after)}; }},
  {"pad", [](C c) -> Grads {
     const auto& before = c.node.attrs.ints("before");
     std::vector<int64_t> end(before.size());
     for (size_t i = 0; i < before.size(); ++i) end[i] = before[i] + c.inputs[0].shape()[i];
     return {slice(c.grad_output, before, end)}; }},
  {"concat", [](C c) -> Grads {
     const int64_t axis = normalize_axis(c.node.attrs.i("axis"), c.output.rank());
     Grads gs;
     int64_t offset = 0;
     for (size_t i = 0; i < c.inputs.size(); ++i) {
       const int64_t extent = c.inputs[i].dim(axis);
       gs.push_back(c.needs(i) ? slice_axis(c.grad_output, axis, offset, offset + extent) : Value());
       offset += extent;
     }
     return gs; }},

  // The three convolution ops are each other's vjps, so the family is closed.
  {"conv2d", [](C c) -> Grads {
     const Attrs a = conv_attrs(c.node.attrs);
     const Value &x = c.inputs[0], &w = c.inputs[1], &g = c.grad_output;
     return {c.needs(0) ? conv2d_backward_input(g, w, a, x.shape()) : Value(),
             c.needs(1) ? conv2d_backward_filter(x, g, a, w.shape()) : Value()}; }},
  {"conv2d_backward_input", [](C c) -> Grads {   // y = Aᵀ(w)·gy, linear in gy and in w
     const Attrs a = conv_attrs(c.node.attrs);
     const Value &gy = c.inputs[0], &w = c.inputs[1], &g = c.grad_output;
     Value gw = c.needs(1) ? conv2d_backward_filter(g, gy, a, w.shape()) : Value();
     return {c.needs(0) ? Value(&c.graph, c.graph.add("conv2d", {g.id(), w.id()}, a)) : Value(), gw}; }},
  {"conv2d_backward_filter", [](C c) -> Grads {  // y = x ⋆ gy, linear in x and in gy
     const Attrs a = conv_attrs(c.node.attrs);
     const Value &x = c.inputs[0], &gy = c.inputs[1], &g = c.grad_output;
     Value ggy = c.needs(1) ? Value(&c.graph, c.graph.add("conv2d", {x.id(), g.id()}, a)) : Value();
     return {c.needs(0) ? conv2d_backward_input(gy, g, a, x.shape()) : Value(), ggy}; }},

  {"matmul", [](C c) -> Grads {
     const bool ta = c.node.attrs.i("transpose_a") != 0, tb = c.node.attrs.i("transpose_b") != 0;
     const Value &a = c.inputs[0], &b = c.inputs[1], &g = c.grad_output;
     Value ga, gb;
     if (c.needs(0)) ga = ta ? matmul(b, g, tb, true) : matmul(g, b, false, !tb);
     if (c.needs(1)) gb = tb ? matmul(g, a, true, ta) : matmul(a, g, !ta, false);
     return {ga, gb}; }},

  {"softmax", [](C c) -> Grads {
     const int64_t axis = c.node.attrs.i("axis");
     Value gy = c.grad_output * c.output;
     return {gy - c.output * sum(gy, {axis}, true)}; }},
  {"log_softmax", [](C c) -> Grads {
     const int64_t axis = c.node.attrs.i("axis");
     return {c.grad_output - exp(c.output) * sum(c.grad_output, {axis}, true)}; }},

  // d/dlogits of -log_softmax(logits)[label] = g·(softmax − one_hot) per row, written as
  // the decomposition's vjp (-g)·one_hot − exp(log_softmax)·Σ_c (-g)·one_hot with the sum,
  // exactly −g, folded: so on the CPU its first and second orders round bit for bit as
  // the decomposition's do (the e2e runs are calibrated on those numbers). Its own
  // derivative goes through exp's and log_softmax's vjps.
  {"softmax_cross_entropy", [](C c) -> Grads {
     const Value &logits = c.inputs[0], &labels = c.inputs[1];
     Value ng = reshape(-c.grad_output, {logits.dim(0), 1});
     Value picked = ng * one_hot(labels, logits.dim(1), logits.dtype());
     return {picked - exp(log_softmax(logits, 1)) * ng, Value()}; }},

  {"gather", [](C c) -> Grads {
     const int64_t axis = normalize_axis(c.node.attrs.i("axis"), c.inputs[0].rank());
     return {gather_backward(c.grad_output, c.inputs[1], axis, c.inputs[0].dim(axis)), Value()}; }},
  {"gather_backward", [](C c) -> Grads {
     return {gather(c.grad_output, c.inputs[1], c.node.attrs.i("axis")), Value()}; }},

  // The fused backward ops compute the decompositions' vjps (the soft path for quantize);
  // one node in both slots gets both partials, summed by the driver. Their own vjps are
  // the partial vjps of those decomposed first-order vjps.
  {"quantize", [](C c) -> Grads {
     const Value &x = c.inputs[0], &cent = c.inputs[1], &g = c.grad_output;
     return {c.needs(0) ? quantize_backward(x, cent, g, 0) : Value(),
             c.needs(1) ? quantize_backward(x, cent, g, 1) : Value()}; }},
  {"quantize_backward", [](C c) -> Grads {
     return through_decomposition(c, [&] {
       return quantize_backward_reference(c.inputs[0], c.inputs[1], c.inputs[2], c.node.attrs.i("wrt")); }); }},
  {"attribution_stats", [](C c) -> Grads {
     const int64_t k = c.node.attrs.i("local_channels");
     const Value &d = c.inputs[0], &a = c.inputs[1], &g = c.grad_output;
     return {c.needs(0) ? attribution_stats_backward(d, a, g, k, 0) : Value(),
             c.needs(1) ? attribution_stats_backward(d, a, g, k, 1) : Value()}; }},
  // The fusion pass's nodes: the vjp of the chain (and sum) each stands for.
  {"fused_elementwise", [](C c) -> Grads {
     return through_decomposition(c, [&] {
       const Shape shape(c.node.attrs.ints("shape").begin(), c.node.attrs.ints("shape").end());
       return fused_elementwise_reference(c.inputs, fused_steps(c.node.attrs), shape); }); }},
  {"fused_sum", [](C c) -> Grads {
     return through_decomposition(c, [&] {
       const Shape shape(c.node.attrs.ints("shape").begin(), c.node.attrs.ints("shape").end());
       const Attrs& a = c.node.attrs;
       return fused_sum_reference(c.inputs, fused_steps(a), shape, a.ints("axes"), a.i("keepdims") != 0,
                                  a.has("sums") ? a.ints("sums") : std::vector<int64_t>{}); }); }},
  {"attribution_stats_backward", [](C c) -> Grads {
     return through_decomposition(c, [&] {
       return attribution_stats_backward_reference(c.inputs[0], c.inputs[1], c.inputs[2],
                                                   c.node.attrs.i("local_channels"), c.node.attrs.i("wrt")); }); }},
};
// clang-format on

// Ops whose derivative is zero almost everywhere, or that take no differentiable input.
const char* const kZeroDerivative[] = {
    "leaf", "fill", "iota", "sign", "equal", "less", "less_equal", "greater", "greater_equal",
    "argmin", "one_hot", "dropout_mask", "stop_gradient",
};

// Ops with no vjp on purpose; grad refuses to pass through them.
const std::pair<const char*, const char*> kNoDerivative[] = {
    {"resize_bilinear", "it resamples input data only, so no vjp is defined"},
};

}  // namespace

void register_derivatives() {
  static const bool registered = [] {
    OpRegistry& r = OpRegistry::instance();
    for (const Entry& e : kDerivatives) r.set_vjp(e.op, e.rule);
    for (const char* op : kZeroDerivative) r.set_zero_derivative(op);
    for (const auto& [op, why] : kNoDerivative) const_cast<OpDef&>(r.get(op)).no_vjp_reason = why;
    return true;
  }();
  (void)registered;
}

}  // namespace agilenn
