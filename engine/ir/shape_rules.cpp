// Shape and dtype rule of every built-in op. The derivative of each op is in
// engine/autodiff/derivatives.cpp; its kernels are in kernels/cpu (and kernels/cuda).
#include <algorithm>

#include "engine/core/error.h"
#include "engine/ir/fused_program.h"
#include "engine/ir/registry.h"
#include "engine/ir/shape_util.h"

namespace agilenn {
namespace {

using Ids = std::vector<NodeId>;

const Node& in(const Graph& g, const Ids& ids, size_t i) { return g.node(ids.at(i)); }

void expect_arity(const Ids& ids, size_t n) {
  AGILENN_CHECK(ids.size() == n, "expects " << n << " input(s), got " << ids.size());
}

void expect_float(const Node& n) {
  AGILENN_CHECK(is_floating(n.dtype), "needs a floating-point input, got " << dtype_name(n.dtype));
}

DType attr_dtype(const Attrs& a) {
  const int64_t d = a.i("dtype");
  AGILENN_CHECK(d >= 0 && d <= static_cast<int64_t>(DType::u8), "bad dtype code " << d);
  return static_cast<DType>(d);
}

TypeInfo unary_float(const Graph& g, const Ids& ids, const Attrs&) {
  expect_arity(ids, 1);
  expect_float(in(g, ids, 0));
  return {in(g, ids, 0).shape, in(g, ids, 0).dtype};
}

TypeInfo broadcast_pair(const Graph& g, const Ids& ids) {
  expect_arity(ids, 2);
  const Node& a = in(g, ids, 0);
  const Node& b = in(g, ids, 1);
  AGILENN_CHECK(a.dtype == b.dtype, "operands differ in dtype: " << dtype_name(a.dtype) << " vs "
                                                                  << dtype_name(b.dtype));
  return {broadcast_shapes(a.shape, b.shape), a.dtype};
}

TypeInfo binary_float(const Graph& g, const Ids& ids, const Attrs&) {
  TypeInfo t = broadcast_pair(g, ids);
  expect_float(in(g, ids, 0));
  return t;
}

TypeInfo comparison(const Graph& g, const Ids& ids, const Attrs&) {
  TypeInfo t = broadcast_pair(g, ids);
  return {t.shape, DType::u8};
}

TypeInfo reduction(const Graph& g, const Ids& ids, const Attrs& a) {
  expect_arity(ids, 1);
  const Node& x = in(g, ids, 0);
  expect_float(x);
  const auto axes = normalize_axes(a.ints("axes"), x.shape.size());
  return {reduced_shape(x.shape, axes, a.i("keepdims") != 0), x.dtype};
}

void check_shape_attr(const Shape& s) {
  for (int64_t d : s) AGILENN_CHECK(d >= 0, "negative dimension in " << shape_str(s));
}

Shape conv_output_shape(const ConvGeometry& c) { return {c.n, c.oh, c.ow, c.cout}; }

ConvGeometry conv_of(const Shape& x, const Shape& w, const Attrs& a) {
  return conv_geometry(x, w, a.ints("stride"), a.ints("dilation"), a.ints("pads"), a.i("groups"));
}

void add(OpRegistry& r, const std::string& name, ShapeRule rule, bool is_leaf = false) {
  OpDef d;
  d.name = name;
  d.shape = std::move(rule);
  d.is_leaf = is_leaf;
  r.add(std::move(d));
}

// The elementwise maps whose kernels (CPU and CUDA) may write over an input (OpDef::elementwise).
const char* const kElementwise[] = {"neg",  "abs", "sign", "exp", "log",     "sqrt",    "rsqrt", "sigmoid",
                                "tanh", "stop_gradient", "clamp", "clamp_grad", "add", "sub", "mul",
                                "div",  "maximum", "minimum", "where", "fused_elementwise"};
const char* const kTranscendental[] = {"exp", "log", "sqrt", "rsqrt", "sigmoid", "tanh"};

// A fused program's node (the fusion pass's): its inputs broadcast to `shape`; every
// instruction reads earlier registers and the right number of them. Returns the program's
// shape and dtype.
TypeInfo fused_program_type(const Graph& g, const Ids& ids, const Attrs& a) {
  const auto inputs = static_cast<int64_t>(ids.size());
  AGILENN_CHECK(inputs >= 1 && inputs <= kernels::kFusedMaxInputs,
                inputs << " inputs, expected 1 to " << kernels::kFusedMaxInputs);
  const Shape shape(a.ints("shape").begin(), a.ints("shape").end());
  check_shape_attr(shape);
  const Node& first = in(g, ids, 0);
  expect_float(first);
  for (size_t k = 0; k < ids.size(); ++k) {
    const Node& x = in(g, ids, k);
    AGILENN_CHECK(x.dtype == first.dtype, "input " << k << " is " << dtype_name(x.dtype) << ", input 0 "
                                                   << dtype_name(first.dtype));
    AGILENN_CHECK(broadcast_shapes(x.shape, shape) == shape,
                  "input " << k << " " << shape_str(x.shape) << " does not broadcast to " << shape_str(shape));
  }
  const std::vector<FusedStep> steps = fused_steps(a);
  AGILENN_CHECK(!steps.empty() && steps.size() <= static_cast<size_t>(kernels::kFusedMaxInstructions),
                steps.size() << " instructions, expected 1 to " << kernels::kFusedMaxInstructions);
  for (size_t j = 0; j < steps.size(); ++j) {
    const int64_t registers = inputs + static_cast<int64_t>(j);
    const bool two = fused_operands(*fused_op_of(steps[j].op)) == 2;
    AGILENN_CHECK(steps[j].a >= 0 && steps[j].a < registers && (two ? steps[j].b >= 0 && steps[j].b < registers
                                                                    : steps[j].b == -1),
                  "instruction " << j << " (" << steps[j].op << ") reads registers " << steps[j].a << ", "
                                 << steps[j].b << " of " << registers);
    AGILENN_CHECK(steps[j].lo <= steps[j].hi, "instruction " << j << ": lo " << steps[j].lo << " exceeds hi "
                                                               << steps[j].hi);
  }
  return {shape, first.dtype};
}

}  // namespace

void register_shape_rules(OpRegistry& r) {
  add(r, "leaf", [](const Graph&, const Ids& ids, const Attrs& a) -> TypeInfo {
    expect_arity(ids, 0);
    check_shape_attr(a.ints("shape"));
    return {a.ints("shape"), attr_dtype(a)};
  }, true);
  add(r, "fill", [](const Graph&, const Ids& ids, const Attrs& a) -> TypeInfo {
    expect_arity(ids, 0);
    check_shape_attr(a.ints("shape"));
    return {a.ints("shape"), attr_dtype(a)};
  }, true);

  add(r, "iota", [](const Graph&, const Ids& ids, const Attrs& a) -> TypeInfo {
    expect_arity(ids, 0);
    AGILENN_CHECK(a.i("n") >= 0, "length must be non-negative");
    return {{a.i("n")}, attr_dtype(a)};
  }, true);

  for (const char* op : {"neg", "abs", "sign", "exp", "log", "sqrt", "rsqrt", "sigmoid", "tanh", "stop_gradient", "all_reduce_sum"})
    add(r, op, unary_float);
  add(r, "clamp", [](const Graph& g, const Ids& ids, const Attrs& a) {
    AGILENN_CHECK(a.f("lo") <= a.f("hi"), "lo " << a.f("lo") << " exceeds hi " << a.f("hi"));
    return unary_float(g, ids, a);
  });
  for (const char* op : {"add", "sub", "mul", "div", "maximum", "minimum"}) add(r, op, binary_float);
  add(r, "clamp_grad", [](const Graph& g, const Ids& ids, const Attrs& a) -> TypeInfo {
    expect_arity(ids, 2);
    const Node& x = in(g, ids, 0);
    const Node& gr = in(g, ids, 1);
    expect_float(x);
    AGILENN_CHECK(x.shape == gr.shape && x.dtype == gr.dtype, "input and gradient must share shape and dtype");
    AGILENN_CHECK(a.f("lo") <= a.f("hi"), "lo " << a.f("lo") << " exceeds hi " << a.f("hi"));
    return {x.shape, x.dtype};
  });
  add(r, "fused_elementwise", fused_program_type);
  // The program summed over its leading axes (the fusion pass's reduction of a chain).
  add(r, "fused_sum", [](const Graph& g, const Ids& ids, const Attrs& a) -> TypeInfo {
    const TypeInfo program = fused_program_type(g, ids, a);
    const auto axes = normalize_axes(a.ints("axes"), program.shape.size());
    AGILENN_CHECK(leading_axes(axes, program.shape.size()), "axes " << shape_str(a.ints("axes"))
                                                                  << " are not leading axes leaving one of "
                                                                  << shape_str(program.shape));
    Shape out = reduced_shape(program.shape, axes, a.i("keepdims") != 0);
    if (a.has("sums"))
      out.insert(out.begin(), static_cast<int64_t>(fused_sum_registers(a, ids.size()).size()));
    return {out, program.dtype};
  });
  for (const char* op : {"equal", "less", "less_equal", "greater", "greater_equal"}) add(r, op, comparison);

  add(r, "where", [](const Graph& g, const Ids& ids, const Attrs&) -> TypeInfo {
    expect_arity(ids, 3);
    const Node& c = in(g, ids, 0);
    AGILENN_CHECK(c.dtype == DType::u8, "condition must be a uint8 mask, got " << dtype_name(c.dtype));
    TypeInfo t = broadcast_pair(g, {ids[1], ids[2]});
    return {broadcast_shapes(c.shape, t.shape), t.dtype};
  });
  add(r, "cast", [](const Graph& g, const Ids& ids, const Attrs& a) -> TypeInfo {
    expect_arity(ids, 1);
    return {in(g, ids, 0).shape, attr_dtype(a)};
  });

  for (const char* op : {"sum", "max", "min"}) add(r, op, reduction);
  add(r, "argmin", [](const Graph& g, const Ids& ids, const Attrs& a) -> TypeInfo {
    expect_arity(ids, 1);
    const Node& x = in(g, ids, 0);
    const int64_t axis = normalize_axis(a.i("axis"), x.shape.size());
    AGILENN_CHECK(x.shape[static_cast<size_t>(axis)] > 0, "argmin over an empty axis");
    return {reduced_shape(x.shape, {axis}, false), DType::i32};
  });

  add(r, "broadcast_to", [](const Graph& g, const Ids& ids, const Attrs& a) -> TypeInfo {
    expect_arity(ids, 1);
    const Node& x = in(g, ids, 0);
    const Shape& target = a.ints("shape");
    AGILENN_CHECK(broadcast_shapes(x.shape, target) == target,
                  "cannot broadcast " << shape_str(x.shape) << " to " << shape_str(target));
    return {target, x.dtype};
  });
  add(r, "reshape", [](const Graph& g, const Ids& ids, const Attrs& a) -> TypeInfo {
    expect_arity(ids, 1);
    const Node& x = in(g, ids, 0);
    const Shape& s = a.ints("shape");
    check_shape_attr(s);
    AGILENN_CHECK(numel(s) == numel(x.shape),
                  "cannot reshape " << shape_str(x.shape) << " to " << shape_str(s));
    return {s, x.dtype};
  });
  add(r, "transpose", [](const Graph& g, const Ids& ids, const Attrs& a) -> TypeInfo {
    expect_arity(ids, 1);
    const Node& x = in(g, ids, 0);
    const auto& perm = a.ints("perm");
    AGILENN_CHECK(perm.size() == x.shape.size(), "perm " << shape_str(perm) << " for rank " << x.shape.size());
    std::vector<int64_t> sorted = perm;
    std::sort(sorted.begin(), sorted.end());
    for (size_t i = 0; i < sorted.size(); ++i)
      AGILENN_CHECK(sorted[i] == static_cast<int64_t>(i), "perm " << shape_str(perm) << " is not a permutation");
    Shape out;
    for (int64_t p : perm) out.push_back(x.shape[static_cast<size_t>(p)]);
    return {out, x.dtype};
  });
  add(r, "slice", [](const Graph& g, const Ids& ids, const Attrs& a) -> TypeInfo {
    expect_arity(ids, 1);
    const Node& x = in(g, ids, 0);
    const auto& b = a.ints("begin");
    const auto& e = a.ints("end");
    AGILENN_CHECK(b.size() == x.shape.size() && e.size() == x.shape.size(), "begin/end need one value per axis");
    Shape out;
    for (size_t i = 0; i < b.size(); ++i) {
      AGILENN_CHECK(0 <= b[i] && b[i] <= e[i] && e[i] <= x.shape[i],
                    "range [" << b[i] << "," << e[i] << ") outside axis " << i << " of extent " << x.shape[i]);
      out.push_back(e[i] - b[i]);
    }
    return {out, x.dtype};
  });
  add(r, "pad", [](const Graph& g, const Ids& ids, const Attrs& a) -> TypeInfo {
    expect_arity(ids, 1);
    const Node& x = in(g, ids, 0);
    const auto& b = a.ints("before");
    const auto& e = a.ints("after");
    AGILENN_CHECK(b.size() == x.shape.size() && e.size() == x.shape.size(), "before/after need one value per axis");
    Shape out;
    for (size_t i = 0; i < b.size(); ++i) {
      AGILENN_CHECK(b[i] >= 0 && e[i] >= 0, "negative padding");
      out.push_back(x.shape[i] + b[i] + e[i]);
    }
    return {out, x.dtype};
  });
  add(r, "concat", [](const Graph& g, const Ids& ids, const Attrs& a) -> TypeInfo {
    AGILENN_CHECK(!ids.empty(), "needs at least one input");
    const Node& first = in(g, ids, 0);
    const auto axis = static_cast<size_t>(normalize_axis(a.i("axis"), first.shape.size()));
    Shape out = first.shape;
    out[axis] = 0;
    for (size_t k = 0; k < ids.size(); ++k) {
      const Node& x = in(g, ids, k);
      AGILENN_CHECK(x.dtype == first.dtype && x.shape.size() == first.shape.size(),
                    "input " << k << " differs in dtype or rank");
      for (size_t i = 0; i < out.size(); ++i)
        AGILENN_CHECK(i == axis || x.shape[i] == first.shape[i],
                      "input " << k << " " << shape_str(x.shape) << " does not match " << shape_str(first.shape));
      out[axis] += x.shape[axis];
    }
    return {out, first.dtype};
  });

  add(r, "conv2d", [](const Graph& g, const Ids& ids, const Attrs& a) -> TypeInfo {
    expect_arity(ids, 2);
    const Node& x = in(g, ids, 0);
    const Node& w = in(g, ids, 1);
    expect_float(x);
    AGILENN_CHECK(x.dtype == w.dtype, "input and filter differ in dtype");
    return {conv_output_shape(conv_of(x.shape, w.shape, a)), x.dtype};
  });
  add(r, "conv2d_backward_input", [](const Graph& g, const Ids& ids, const Attrs& a) -> TypeInfo {
    expect_arity(ids, 2);
    const Node& gy = in(g, ids, 0);
    const Node& w = in(g, ids, 1);
    expect_float(gy);
    AGILENN_CHECK(gy.dtype == w.dtype, "gradient and filter differ in dtype");
    const Shape& xs = a.ints("input_shape");
    const Shape expect = conv_output_shape(conv_of(xs, w.shape, a));
    AGILENN_CHECK(gy.shape == expect, "output gradient " << shape_str(gy.shape) << " should be " << shape_str(expect));
    return {xs, gy.dtype};
  });
  add(r, "conv2d_backward_filter", [](const Graph& g, const Ids& ids, const Attrs& a) -> TypeInfo {
    expect_arity(ids, 2);
    const Node& x = in(g, ids, 0);
    const Node& gy = in(g, ids, 1);
    expect_float(x);
    AGILENN_CHECK(gy.dtype == x.dtype, "input and gradient differ in dtype");
    const Shape& ws = a.ints("filter_shape");
    const Shape expect = conv_output_shape(conv_of(x.shape, ws, a));
    AGILENN_CHECK(gy.shape == expect, "output gradient " << shape_str(gy.shape) << " should be " << shape_str(expect));
    return {ws, x.dtype};
  });

  add(r, "matmul", [](const Graph& g, const Ids& ids, const Attrs& a) -> TypeInfo {
    expect_arity(ids, 2);
    const Node& x = in(g, ids, 0);
    const Node& y = in(g, ids, 1);
    expect_float(x);
    AGILENN_CHECK(x.dtype == y.dtype, "operands differ in dtype");
    AGILENN_CHECK(x.shape.size() == 2 && y.shape.size() == 2, "needs two matrices");
    const bool ta = a.i("transpose_a") != 0, tb = a.i("transpose_b") != 0;
    const int64_t m = ta ? x.shape[1] : x.shape[0], k = ta ? x.shape[0] : x.shape[1];
    const int64_t k2 = tb ? y.shape[1] : y.shape[0], n = tb ? y.shape[0] : y.shape[1];
    AGILENN_CHECK(k == k2, "inner dimensions differ: " << k << " vs " << k2);
    return {{m, n}, x.dtype};
  });

  const auto along_axis = [](const Graph& g, const Ids& ids, const Attrs& a) -> TypeInfo {
    TypeInfo t = unary_float(g, ids, a);
    normalize_axis(a.i("axis"), t.shape.size());
    return t;
  };
  add(r, "softmax", along_axis);
  add(r, "log_softmax", along_axis);

  add(r, "gather", [](const Graph& g, const Ids& ids, const Attrs& a) -> TypeInfo {
    expect_arity(ids, 2);
    const Node& x = in(g, ids, 0);
    const Node& idx = in(g, ids, 1);
    AGILENN_CHECK(idx.dtype == DType::i32, "indices must be int32");
    const auto axis = static_cast<size_t>(normalize_axis(a.i("axis"), x.shape.size()));
    Shape out(x.shape.begin(), x.shape.begin() + static_cast<long>(axis));
    out.insert(out.end(), idx.shape.begin(), idx.shape.end());
    out.insert(out.end(), x.shape.begin() + static_cast<long>(axis) + 1, x.shape.end());
    return {out, x.dtype};
  });
  add(r, "gather_backward", [](const Graph& g, const Ids& ids, const Attrs& a) -> TypeInfo {
    expect_arity(ids, 2);
    const Node& gr = in(g, ids, 0);
    const Node& idx = in(g, ids, 1);
    expect_float(gr);
    AGILENN_CHECK(idx.dtype == DType::i32, "indices must be int32");
    const int64_t axis = a.i("axis");
    AGILENN_CHECK(axis >= 0 && static_cast<size_t>(axis) + idx.shape.size() <= gr.shape.size(),
                  "axis " << axis << " and index rank " << idx.shape.size() << " do not fit "
                          << shape_str(gr.shape));
    for (size_t i = 0; i < idx.shape.size(); ++i)
      AGILENN_CHECK(gr.shape[static_cast<size_t>(axis) + i] == idx.shape[i], "gradient does not match indices");
    AGILENN_CHECK(a.i("dim") > 0, "dim must be positive, got " << a.i("dim"));
    Shape out(gr.shape.begin(), gr.shape.begin() + axis);
    out.push_back(a.i("dim"));
    out.insert(out.end(), gr.shape.begin() + axis + static_cast<long>(idx.shape.size()), gr.shape.end());
    return {out, gr.dtype};
  });
  add(r, "one_hot", [](const Graph& g, const Ids& ids, const Attrs& a) -> TypeInfo {
    expect_arity(ids, 1);
    const Node& idx = in(g, ids, 0);
    AGILENN_CHECK(idx.dtype == DType::i32, "indices must be int32");
    AGILENN_CHECK(a.i("depth") > 0, "depth must be positive");
    Shape out = idx.shape;
    out.push_back(a.i("depth"));
    return {out, attr_dtype(a)};
  });
  add(r, "softmax_cross_entropy", [](const Graph& g, const Ids& ids, const Attrs&) -> TypeInfo {
    expect_arity(ids, 2);
    const Node& x = in(g, ids, 0);
    const Node& labels = in(g, ids, 1);
    expect_float(x);
    AGILENN_CHECK(labels.dtype == DType::i32, "labels must be int32, got " << dtype_name(labels.dtype));
    AGILENN_CHECK(x.shape.size() == 2 && labels.shape.size() == 1 && labels.shape[0] == x.shape[0],
                  "needs logits [N,C] and labels [N], got " << shape_str(x.shape) << " and " << shape_str(labels.shape));
    return {{x.shape[0]}, x.dtype};
  });
  add(r, "dropout_mask", [](const Graph& g, const Ids& ids, const Attrs& a) -> TypeInfo {
    expect_arity(ids, 1);
    const Node& c = in(g, ids, 0);
    AGILENN_CHECK(c.dtype == DType::i32 && c.shape.empty(), "counter must be an int32 scalar");
    const double p = a.f("p");
    AGILENN_CHECK(p >= 0.0 && p < 1.0, "drop probability " << p << " outside [0, 1)");
    const DType t = attr_dtype(a);
    AGILENN_CHECK(is_floating(t), "mask dtype must be floating-point");
    check_shape_attr(a.ints("shape"));
    return {a.ints("shape"), t};
  });
  add(r, "quantize", [](const Graph& g, const Ids& ids, const Attrs&) -> TypeInfo {
    expect_arity(ids, 2);
    const Node& x = in(g, ids, 0);
    const Node& c = in(g, ids, 1);
    expect_float(x);
    AGILENN_CHECK(c.dtype == x.dtype && c.shape.size() == 1 && c.shape[0] > 0,
                  "centroids must be a non-empty vector of the input's dtype");
    return {x.shape, x.dtype};
  });
  add(r, "quantize_backward", [](const Graph& g, const Ids& ids, const Attrs& a) -> TypeInfo {
    expect_arity(ids, 3);
    const Node& x = in(g, ids, 0);
    const Node& c = in(g, ids, 1);
    const Node& gy = in(g, ids, 2);
    expect_float(x);
    AGILENN_CHECK(c.dtype == x.dtype && c.shape.size() == 1 && c.shape[0] > 0,
                  "centroids must be a non-empty vector of the input's dtype");
    AGILENN_CHECK(gy.dtype == x.dtype && gy.shape == x.shape, "the output gradient must match the input, got "
                                                                 << shape_str(gy.shape) << " " << dtype_name(gy.dtype));
    const int64_t wrt = a.i("wrt");
    AGILENN_CHECK(wrt == 0 || wrt == 1, "wrt must be 0 (x) or 1 (centroids), got " << wrt);
    return {wrt == 0 ? x.shape : c.shape, x.dtype};
  });
  add(r, "attribution_stats", [](const Graph& g, const Ids& ids, const Attrs& a) -> TypeInfo {
    expect_arity(ids, 2);
    const Node& d = in(g, ids, 0);
    const Node& w = in(g, ids, 1);
    expect_float(d);
    AGILENN_CHECK(d.shape.size() == 4 && d.shape == w.shape && d.dtype == w.dtype,
                  "needs two [B,h,w,C] tensors of one dtype");
    const int64_t k = a.i("local_channels");
    AGILENN_CHECK(k > 0 && k < d.shape[3], "local channels " << k << " must lie in (0, " << d.shape[3] << ")");
    return {{d.shape[0], 3}, d.dtype};
  });
  add(r, "attribution_stats_backward", [](const Graph& g, const Ids& ids, const Attrs& a) -> TypeInfo {
    expect_arity(ids, 3);
    const Node& d = in(g, ids, 0);
    const Node& w = in(g, ids, 1);
    const Node& gy = in(g, ids, 2);
    expect_float(d);
    AGILENN_CHECK(d.shape.size() == 4 && d.shape == w.shape && d.dtype == w.dtype,
                  "needs two [B,h,w,C] tensors of one dtype");
    AGILENN_CHECK(gy.dtype == d.dtype && gy.shape == (Shape{d.shape[0], 3}),
                  "the output gradient must be [" << d.shape[0] << ",3] of the inputs' dtype, got "
                                                  << shape_str(gy.shape) << " " << dtype_name(gy.dtype));
    const int64_t k = a.i("local_channels");
    AGILENN_CHECK(k > 0 && k < d.shape[3], "local channels " << k << " must lie in (0, " << d.shape[3] << ")");
    AGILENN_CHECK(a.i("wrt") == 0 || a.i("wrt") == 1, "wrt must be 0 (delta) or 1 (a), got " << a.i("wrt"));
    return {d.shape, d.dtype};
  });
  add(r, "resize_bilinear", [](const Graph& g, const Ids& ids, const Attrs& a) -> TypeInfo {
    expect_arity(ids, 1);
    const Node& x = in(g, ids, 0);
    expect_float(x);
    AGILENN_CHECK(x.shape.size() == 4 && x.shape[1] > 0 && x.shape[2] > 0, "needs NHWC input with pixels");
    AGILENN_CHECK(a.i("out_h") > 0 && a.i("out_w") > 0, "output size must be positive");
    return {{x.shape[0], a.i("out_h"), a.i("out_w"), x.shape[3]}, x.dtype};
  });
  for (const char* op : kElementwise) const_cast<OpDef&>(r.get(op)).elementwise = true;
  for (const char* op : kTranscendental) const_cast<OpDef&>(r.get(op)).transcendental = true;
}

}  // namespace agilenn
