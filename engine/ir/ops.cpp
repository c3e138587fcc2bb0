#include "engine/ir/ops.h"

#include <array>

#include "engine/core/error.h"
#include "engine/ir/shape_util.h"

namespace agilenn {

int64_t Value::dim(int64_t i) const { return shape().at(static_cast<size_t>(normalize_axis(i, rank()))); }

namespace ops {
namespace {

Value make(Graph& g, const std::string& op, const std::vector<Value>& inputs, Attrs attrs = {}) {
  std::vector<NodeId> ids;
  ids.reserve(inputs.size());
  for (const Value& v : inputs) {
    AGILENN_CHECK(v.valid(), "op '" << op << "': an input Value is empty");
    AGILENN_CHECK(&v.graph() == &g, "op '" << op << "': inputs come from different graphs");
    ids.push_back(v.id());
  }
  return Value(&g, g.add(op, std::move(ids), std::move(attrs)));
}

Value unary(const std::string& op, const Value& x, Attrs attrs = {}) {
  return make(x.graph(), op, {x}, std::move(attrs));
}

Value binary(const std::string& op, const Value& a, const Value& b) { return make(a.graph(), op, {a, b}); }

Value reduce(const std::string& op, const Value& x, std::vector<int64_t> axes, bool keepdims) {
  return unary(op, x, {{"axes", std::move(axes)}, {"keepdims", int64_t{keepdims}}});
}

}  // namespace

Value leaf(Graph& g, const std::string& name, Shape shape, DType dtype, LeafKind kind) {
  return Value(&g, g.leaf(name, std::move(shape), dtype, kind));
}

Value fill(Graph& g, double value, Shape shape, DType dtype) {
  return make(g, "fill", {}, {{"value", value}, {"shape", std::move(shape)}, {"dtype", int64_t(dtype)}});
}

Value scalar_like(const Value& x, double value) { return fill(x.graph(), value, {}, x.dtype()); }

Value iota(Graph& g, int64_t n, DType dtype) { return make(g, "iota", {}, {{"n", n}, {"dtype", int64_t(dtype)}}); }

Value neg(const Value& x) { return unary("neg", x); }
Value abs(const Value& x) { return unary("abs", x); }
Value sign(const Value& x) { return unary("sign", x); }
Value exp(const Value& x) { return unary("exp", x); }
Value log(const Value& x) { return unary("log", x); }
Value sqrt(const Value& x) { return unary("sqrt", x); }
Value rsqrt(const Value& x) { return unary("rsqrt", x); }
Value sigmoid(const Value& x) { return unary("sigmoid", x); }
Value tanh(const Value& x) { return unary("tanh", x); }
Value clamp(const Value& x, double lo, double hi) { return unary("clamp", x, {{"lo", lo}, {"hi", hi}}); }
Value clamp_grad(const Value& x, const Value& g, double lo, double hi) {
  return make(x.graph(), "clamp_grad", {x, g}, {{"lo", lo}, {"hi", hi}});
}
Value fused_elementwise(const std::vector<Value>& inputs, const std::vector<FusedStep>& steps, const Shape& shape) {
  AGILENN_CHECK(!inputs.empty(), "fused_elementwise: no inputs");
  return make(inputs[0].graph(), "fused_elementwise", inputs, fused_attrs(steps, shape));
}

Value fused_sum(const std::vector<Value>& inputs, const std::vector<FusedStep>& steps, const Shape& shape,
                std::vector<int64_t> axes, bool keepdims, std::vector<int64_t> sums) {
  AGILENN_CHECK(!inputs.empty(), "fused_sum: no inputs");
  return make(inputs[0].graph(), "fused_sum", inputs,
              fused_sum_attrs(steps, shape, std::move(axes), keepdims, std::move(sums)));
}

namespace {
// The program's registers as registry ops: the inputs, then one value per instruction.
std::vector<Value> fused_registers_reference(const std::vector<Value>& inputs, const std::vector<FusedStep>& steps,
                                             const Shape& shape) {
  std::vector<Value> r = inputs;
  for (const FusedStep& s : steps) {
    const Value& a = r.at(static_cast<size_t>(s.a));
    const std::string& op = s.op;
    if (op == "clamp") {
      r.push_back(clamp(a, s.lo, s.hi));
    } else if (op == "broadcast_to") {
      r.push_back(broadcast_to(a, shape));
    } else if (op == "clamp_grad") {
      r.push_back(clamp_grad(a, r.at(static_cast<size_t>(s.b)), s.lo, s.hi));
    } else if (fused_operands(*fused_op_of(op)) == 2) {
      r.push_back(make(a.graph(), op, {a, r.at(static_cast<size_t>(s.b))}, {}));
    } else {
      r.push_back(make(a.graph(), op, {a}, {}));
    }
  }
  return r;
}
}  // namespace

Value fused_elementwise_reference(const std::vector<Value>& inputs, const std::vector<FusedStep>& steps,
                                  const Shape& shape) {
  return broadcast_to(fused_registers_reference(inputs, steps, shape).back(), shape);
}

Value fused_sum_reference(const std::vector<Value>& inputs, const std::vector<FusedStep>& steps, const Shape& shape,
                          const std::vector<int64_t>& axes, bool keepdims, const std::vector<int64_t>& sums) {
  const std::vector<Value> r = fused_registers_reference(inputs, steps, shape);
  const auto summed = [&](size_t reg) { return sum(broadcast_to(r.at(reg), shape), axes, keepdims); };
  if (sums.empty()) return summed(r.size() - 1);
  std::vector<Value> stacked;
  for (int64_t reg : sums) {
    const Value s = summed(static_cast<size_t>(reg));
    Shape one = s.shape();
    one.insert(one.begin(), 1);
    stacked.push_back(reshape(s, one));
  }
  return stacked.size() == 1 ? stacked[0] : concat(stacked, 0);
}

Value add(const Value& a, const Value& b) { return binary("add", a, b); }
Value sub(const Value& a, const Value& b) { return binary("sub", a, b); }
Value mul(const Value& a, const Value& b) { return binary("mul", a, b); }
Value div(const Value& a, const Value& b) { return binary("div", a, b); }
Value maximum(const Value& a, const Value& b) { return binary("maximum", a, b); }
Value minimum(const Value& a, const Value& b) { return binary("minimum", a, b); }
Value equal(const Value& a, const Value& b) { return binary("equal", a, b); }
Value less(const Value& a, const Value& b) { return binary("less", a, b); }
Value less_equal(const Value& a, const Value& b) { return binary("less_equal", a, b); }
Value greater(const Value& a, const Value& b) { return binary("greater", a, b); }
Value greater_equal(const Value& a, const Value& b) { return binary("greater_equal", a, b); }
Value where(const Value& c, const Value& a, const Value& b) { return make(c.graph(), "where", {c, a, b}); }
Value cast(const Value& x, DType dtype) {
  if (x.dtype() == dtype) return x;
  return unary("cast", x, {{"dtype", int64_t(dtype)}});
}

Value sum(const Value& x, std::vector<int64_t> axes, bool keepdims) {
  return reduce("sum", x, std::move(axes), keepdims);
}
Value max(const Value& x, std::vector<int64_t> axes, bool keepdims) {
  return reduce("max", x, std::move(axes), keepdims);
}
Value min(const Value& x, std::vector<int64_t> axes, bool keepdims) {
  return reduce("min", x, std::move(axes), keepdims);
}
Value mean(const Value& x, std::vector<int64_t> axes, bool keepdims) {
  std::vector<int64_t> norm;
  try {
    norm = normalize_axes(axes, x.rank());
  } catch (const Error& e) {
    AGILENN_THROW("mean over " << shape_str(axes) << " of " << shape_str(x.shape()) << ": " << e.what());
  }
  int64_t count = 1;
  for (int64_t a : norm) count *= x.shape()[static_cast<size_t>(a)];
  return sum(x, std::move(axes), keepdims) * (1.0 / static_cast<double>(count));
}
Value argmin(const Value& x, int64_t axis) { return unary("argmin", x, {{"axis", axis}}); }

Value broadcast_to(const Value& x, Shape shape) {
  if (x.shape() == shape) return x;
  return unary("broadcast_to", x, {{"shape", std::move(shape)}});
}

Value sum_to(const Value& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  const size_t r = x.rank();
  AGILENN_CHECK(shape.size() <= r, "sum_to: cannot reduce " << shape_str(x.shape()) << " to "
                                                             << shape_str(shape));
  const size_t lead = r - shape.size();
  std::vector<int64_t> axes;
  for (size_t i = 0; i < r; ++i) {
    if (i < lead) axes.push_back(static_cast<int64_t>(i));
    else if (shape[i - lead] == 1 && x.shape()[i] != 1) axes.push_back(static_cast<int64_t>(i));
    else
      AGILENN_CHECK(shape[i - lead] == x.shape()[i],
                    "sum_to: cannot reduce " << shape_str(x.shape()) << " to " << shape_str(shape));
  }
  Value s = axes.empty() ? x : sum(x, axes, true);
  return reshape(s, shape);
}

Value reshape(const Value& x, Shape shape) {
  if (x.shape() == shape) return x;
  return unary("reshape", x, {{"shape", std::move(shape)}});
}

Value transpose(const Value& x, std::vector<int64_t> perm) { return unary("transpose", x, {{"perm", std::move(perm)}}); }

Value slice(const Value& x, std::vector<int64_t> begin, std::vector<int64_t> end) {
  return unary("slice", x, {{"begin", std::move(begin)}, {"end", std::move(end)}});
}

Value slice_axis(const Value& x, int64_t axis, int64_t begin, int64_t end) {
  const auto a = static_cast<size_t>(normalize_axis(axis, x.rank()));
  std::vector<int64_t> b(x.rank(), 0), e(x.shape().begin(), x.shape().end());
  b[a] = begin;
  e[a] = end;
  return slice(x, std::move(b), std::move(e));
}

Value pad(const Value& x, std::vector<int64_t> before, std::vector<int64_t> after) {
  return unary("pad", x, {{"before", std::move(before)}, {"after", std::move(after)}});
}

Value concat(const std::vector<Value>& xs, int64_t axis) {
  AGILENN_CHECK(!xs.empty(), "concat of nothing");
  if (xs.size() == 1) return xs[0];
  return make(xs[0].graph(), "concat", xs, {{"axis", axis}});
}

Value conv2d(const Value& x, const Value& w, const Conv2dOptions& opt) {
  std::vector<int64_t> pads{0, 0, 0, 0};
  if (opt.padding != Padding::valid) {
    AGILENN_CHECK(x.rank() == 4 && w.rank() == 4 && opt.stride.size() == 2 && opt.dilation.size() == 2,
                  "conv2d: same or symmetric padding needs NHWC input, HWIO filter and 2-value stride/dilation");
    for (int axis : {0, 1}) {
      const int64_t span = (w.dim(axis) - 1) * opt.dilation[static_cast<size_t>(axis)];
      std::array<int64_t, 2> p{};
      if (opt.padding == Padding::same) {
        p = same_padding(x.dim(axis + 1), w.dim(axis), opt.stride[static_cast<size_t>(axis)],
                         opt.dilation[static_cast<size_t>(axis)]);
      } else {
        AGILENN_CHECK(span % 2 == 0, "conv2d: symmetric padding needs an odd kernel extent, got "
                                         << w.dim(axis) << " with dilation " << opt.dilation[static_cast<size_t>(axis)]);
        p = {span / 2, span / 2};
      }
      pads[static_cast<size_t>(2 * axis)] = p[0];
      pads[static_cast<size_t>(2 * axis + 1)] = p[1];
    }
  }
  Attrs a{{"stride", opt.stride}, {"dilation", opt.dilation}, {"groups", opt.groups}, {"pads", pads}};
  return make(x.graph(), "conv2d", {x, w}, std::move(a));
}

Value conv2d_backward_input(const Value& gy, const Value& w, const Attrs& conv_attrs, const Shape& input_shape) {
  Attrs a = conv_attrs;
  a.set("input_shape", input_shape);
  return make(gy.graph(), "conv2d_backward_input", {gy, w}, std::move(a));
}

Value conv2d_backward_filter(const Value& x, const Value& gy, const Attrs& conv_attrs, const Shape& filter_shape) {
  Attrs a = conv_attrs;
  a.set("filter_shape", filter_shape);
  return make(x.graph(), "conv2d_backward_filter", {x, gy}, std::move(a));
}

Value depthwise_conv2d(const Value& x, const Value& w, Conv2dOptions opt) {
  opt.groups = x.dim(3);
  return conv2d(x, w, opt);
}

Value matmul(const Value& a, const Value& b, bool ta, bool tb) {
  return make(a.graph(), "matmul", {a, b}, {{"transpose_a", int64_t{ta}}, {"transpose_b", int64_t{tb}}});
}

Value dense(const Value& x, const Value& w, const Value& b) {
  Value y = matmul(x, w);
  return b.valid() ? y + b : y;
}

Value softmax(const Value& x, int64_t axis) { return unary("softmax", x, {{"axis", axis}}); }
Value log_softmax(const Value& x, int64_t axis) { return unary("log_softmax", x, {{"axis", axis}}); }
Value relu(const Value& x) { return maximum(x, scalar_like(x, 0.0)); }
Value relu6(const Value& x) { return clamp(x, 0.0, 6.0); }
Value silu(const Value& x) { return x * sigmoid(x); }
Value global_avg_pool(const Value& x) {
  AGILENN_CHECK(x.rank() == 4, "global_avg_pool needs NHWC input, got " << shape_str(x.shape()));
  return mean(x, {1, 2});
}

namespace {
std::vector<int64_t> all_but_last(const Value& x) {
  std::vector<int64_t> axes;
  for (size_t i = 0; i + 1 < x.rank(); ++i) axes.push_back(static_cast<int64_t>(i));
  return axes;
}
}  // namespace

BatchNormResult batch_norm_train(const Value& x, const Value& gamma, const Value& beta,
                                 const Value& running_mean, const Value& running_var, double momentum,
                                 double eps, int64_t replicas) {
  AGILENN_CHECK(replicas >= 1, "batch_norm_train over " << replicas << " replicas");
  AGILENN_CHECK(x.rank() >= 2 && x.dim(-1) > 0, "batch_norm_train needs [..., C] with C > 0, got "
                                                     << shape_str(x.shape()));
  const std::vector<int64_t> axes = all_but_last(x);
  const int64_t count = numel(x.shape()) / x.dim(-1) * replicas;
  AGILENN_CHECK(count > 1, "batch_norm_train needs more than one value per channel, got "
                               << shape_str(x.shape()));
  auto global_mean = [&](const Value& v) {
    return replicas == 1 ? mean(v, axes) : all_reduce_sum(sum(v, axes)) * (1.0 / static_cast<double>(count));
  };
  Value mu = global_mean(x);
  Value centred = x - mu;
  Value var = global_mean(centred * centred);
  // The per-channel scale first, as batch_norm_eval does: one full-size multiply fewer
  // in the forward and in the backward (x's gradient times the scale).
  Value y = centred * (rsqrt(var + eps) * gamma) + beta;
  const double bessel = static_cast<double>(count) / static_cast<double>(count - 1);
  Value batch_mu = stop_gradient(mu);
  Value batch_var = stop_gradient(var) * bessel;
  return {y, running_mean * momentum + batch_mu * (1.0 - momentum),
          running_var * momentum + batch_var * (1.0 - momentum), batch_mu, batch_var};
}

Value batch_norm_eval(const Value& x, const Value& gamma, const Value& beta, const Value& running_mean,
                      const Value& running_var, double eps) {
  return (x - running_mean) * (rsqrt(running_var + eps) * gamma) + beta;
}

Value gather(const Value& x, const Value& idx, int64_t axis) {
  return make(x.graph(), "gather", {x, idx}, {{"axis", axis}});
}

Value gather_backward(const Value& g, const Value& idx, int64_t axis, int64_t dim) {
  return make(g.graph(), "gather_backward", {g, idx}, {{"axis", axis}, {"dim", dim}});
}

Value one_hot(const Value& idx, int64_t depth, DType dtype) {
  return unary("one_hot", idx, {{"depth", depth}, {"dtype", int64_t(dtype)}});
}

namespace {
void check_cross_entropy(const Value& logits, const Value& labels) {
  AGILENN_CHECK(logits.rank() == 2 && labels.rank() == 1 && labels.dim(0) == logits.dim(0),
                "cross_entropy needs logits [N,C] and labels [N], got " << shape_str(logits.shape()) << " and "
                                                                        << shape_str(labels.shape()));
}
}  // namespace

Value cross_entropy(const Value& logits, const Value& labels) { return softmax_cross_entropy(logits, labels); }

Value softmax_cross_entropy(const Value& logits, const Value& labels) {
  check_cross_entropy(logits, labels);
  return make(logits.graph(), "softmax_cross_entropy", {logits, labels});
}

Value cross_entropy_reference(const Value& logits, const Value& labels) {
  check_cross_entropy(logits, labels);
  Value picked = sum(one_hot(labels, logits.dim(1), logits.dtype()) * log_softmax(logits, 1), {1});
  return -picked;
}

Value dropout_mask(const Value& counter, Shape shape, double p, uint64_t seed, DType dtype) {
  return unary("dropout_mask", counter,
               {{"shape", std::move(shape)}, {"p", p}, {"seed", static_cast<int64_t>(seed)}, {"dtype", int64_t(dtype)}});
}

Value dropout(const Value& x, const Value& counter, double p, uint64_t seed) {
  if (p == 0.0) return x;
  return x * dropout_mask(counter, x.shape(), p, seed, x.dtype());
}

Value resize_bilinear(const Value& x, int64_t out_h, int64_t out_w) {
  return unary("resize_bilinear", x, {{"out_h", out_h}, {"out_w", out_w}});
}

Value stop_gradient(const Value& x) { return unary("stop_gradient", x); }

Value all_reduce_sum(const Value& x) { return unary("all_reduce_sum", x); }

Value quantize(const Value& x, const Value& centroids) { return make(x.graph(), "quantize", {x, centroids}); }

namespace {
// Squared distances of every element of x to every centroid: x.shape + [J].
Value centroid_distances(const Value& x, const Value& centroids) {
  Shape expanded = x.shape();
  expanded.push_back(1);
  Value d = reshape(x, expanded) - centroids;
  return d * d;
}
}  // namespace

Value quantize_soft(const Value& x, const Value& centroids) {
  Value p = softmax(-centroid_distances(x, centroids), -1);
  return sum(p * centroids, {-1});
}

Value quantize_reference(const Value& x, const Value& centroids) {
  Value hard = gather(centroids, argmin(centroid_distances(x, centroids), -1), 0);
  Value soft = quantize_soft(x, centroids);
  return soft + stop_gradient(hard - soft);
}

Value quantize_backward(const Value& x, const Value& centroids, const Value& g, int64_t wrt) {
  return make(x.graph(), "quantize_backward", {x, centroids, g}, {{"wrt", wrt}});
}

Value attribution_stats(const Value& delta, const Value& a, int64_t local_channels) {
  return make(delta.graph(), "attribution_stats", {delta, a}, {{"local_channels", local_channels}});
}

Value attribution_stats_reference(const Value& delta, const Value& a, int64_t local_channels) {
  const int64_t b = delta.dim(0), c = delta.dim(-1);
  Value importance = abs(delta * a);
  Value per_channel = sum(importance, {1, 2});
  Value local = sum(slice_axis(per_channel, 1, 0, local_channels), {1}, true);
  Value total = sum(per_channel, {1}, true);
  Value worst_remote = max(slice_axis(importance, 3, local_channels, c), {1, 2, 3});
  Value weakest_local = min(slice_axis(importance, 3, 0, local_channels), {1, 2, 3});
  return concat({local, total, reshape(worst_remote - weakest_local, {b, 1})}, 1);
}

Value attribution_stats_backward(const Value& delta, const Value& a, const Value& g, int64_t local_channels,
                                 int64_t wrt) {
  return make(delta.graph(), "attribution_stats_backward", {delta, a, g},
              {{"local_channels", local_channels}, {"wrt", wrt}});
}

}  // namespace ops

Value operator+(const Value& a, const Value& b) { return ops::add(a, b); }
Value operator-(const Value& a, const Value& b) { return ops::sub(a, b); }
Value operator*(const Value& a, const Value& b) { return ops::mul(a, b); }
Value operator/(const Value& a, const Value& b) { return ops::div(a, b); }
Value operator-(const Value& a) { return ops::neg(a); }
Value operator+(const Value& a, double b) { return a + ops::scalar_like(a, b); }
Value operator-(const Value& a, double b) { return a - ops::scalar_like(a, b); }
Value operator*(const Value& a, double b) { return a * ops::scalar_like(a, b); }
Value operator/(const Value& a, double b) { return a / ops::scalar_like(a, b); }
Value operator+(double a, const Value& b) { return ops::scalar_like(b, a) + b; }
Value operator-(double a, const Value& b) { return ops::scalar_like(b, a) - b; }
Value operator*(double a, const Value& b) { return ops::scalar_like(b, a) * b; }
Value operator/(double a, const Value& b) { return ops::scalar_like(b, a) / b; }

}  // namespace agilenn
