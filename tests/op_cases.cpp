// The op table of the gradient checker: for every registry op, cases with odd sizes
// (and, for convolutions, strides, dilations, groups and paddings), each with a naive
// float64 reference of its forward value where one is short to write.
#include <cmath>
#include <functional>
#include <numeric>

#include "engine/ir/shape_util.h"
#include "tests/gradcheck.h"

namespace agilenn::testing {
namespace {

using V = const std::vector<Value>&;
using T = const std::vector<Tensor>&;

InputSpec in(Shape s, double lo = -1.0, double hi = 1.0) { return InputSpec{std::move(s), lo, hi}; }
InputSpec with_kinks(Shape s, std::vector<double> kinks, double lo = -1.0, double hi = 1.0) {
  InputSpec spec{std::move(s), lo, hi};
  spec.kinks = std::move(kinks);
  return spec;
}
InputSpec ints(Shape s, int lo, int hi) {
  InputSpec spec{std::move(s), static_cast<double>(lo), static_cast<double>(hi)};
  spec.int_dtype = DType::i32;
  return spec;
}

// ---- reference helpers (float64, numpy semantics)

std::vector<int64_t> unravel(int64_t i, const Shape& s) {
  std::vector<int64_t> idx(s.size());
  for (size_t d = s.size(); d-- > 0;) {
    idx[d] = i % s[d];
    i /= s[d];
  }
  return idx;
}

int64_t ravel(const std::vector<int64_t>& idx, const Shape& s) {
  int64_t off = 0;
  for (size_t d = 0; d < s.size(); ++d) off = off * s[d] + idx[d];
  return off;
}

// Value of t at an index of a (possibly larger, broadcast) output shape.
double at_broadcast(const Tensor& t, const std::vector<int64_t>& out_idx) {
  const size_t lead = out_idx.size() - t.rank();
  std::vector<int64_t> idx(t.rank());
  for (size_t d = 0; d < t.rank(); ++d) idx[d] = t.dim(d) == 1 ? 0 : out_idx[lead + d];
  return t.item(ravel(idx, t.shape()));
}

Tensor map_ref(const std::vector<Tensor>& xs, const std::function<double(const std::vector<double>&)>& f) {
  Shape s = xs[0].shape();
  for (const Tensor& x : xs) s = broadcast_shapes(s, x.shape());
  Tensor out = Tensor::zeros(s, DType::f64);
  std::vector<double> args(xs.size());
  for (int64_t i = 0; i < out.numel(); ++i) {
    const auto idx = unravel(i, s);
    for (size_t k = 0; k < xs.size(); ++k) args[k] = at_broadcast(xs[k], idx);
    out.set_item(i, f(args));
  }
  return out;
}

CaseReference unary_ref(double (*f)(double)) {
  return [f](T x) { return map_ref({x[0]}, [f](const std::vector<double>& a) { return f(a[0]); }); };
}
CaseReference binary_ref(std::function<double(double, double)> f) {
  return [f](T x) { return map_ref({x[0], x[1]}, [f](const std::vector<double>& a) { return f(a[0], a[1]); }); };
}

// Reduction of x over `axes` with `op` starting at `init`.
Tensor reduce_ref(const Tensor& x, std::vector<int64_t> axes, bool keepdims, double init,
                  const std::function<double(double, double)>& op) {
  axes = normalize_axes(axes, x.rank());
  const Shape keep = reduced_shape(x.shape(), axes, true);
  Tensor out = Tensor::zeros(keep, DType::f64);
  for (int64_t i = 0; i < out.numel(); ++i) out.set_item(i, init);
  for (int64_t i = 0; i < x.numel(); ++i) {
    auto idx = unravel(i, x.shape());
    for (int64_t a : axes) idx[static_cast<size_t>(a)] = 0;
    const int64_t o = ravel(idx, keep);
    out.set_item(o, op(out.item(o), x.item(i)));
  }
  if (keepdims) return out;
  Tensor squeezed(reduced_shape(x.shape(), axes, false), DType::f64, out.storage());
  return squeezed;
}

double conv_window(const Tensor& x, const Tensor& w, int64_t n, int64_t oh, int64_t ow, int64_t co,
                   const std::vector<int64_t>& stride, const std::vector<int64_t>& dil, int64_t pad_top,
                   int64_t pad_left, int64_t groups) {
  const int64_t cin_g = w.dim(2), cout_g = w.dim(3) / groups, g = co / cout_g;
  double s = 0;
  for (int64_t kh = 0; kh < w.dim(0); ++kh)
    for (int64_t kw = 0; kw < w.dim(1); ++kw) {
      const int64_t ih = oh * stride[0] - pad_top + kh * dil[0], iw = ow * stride[1] - pad_left + kw * dil[1];
      if (ih < 0 || ih >= x.dim(1) || iw < 0 || iw >= x.dim(2)) continue;
      for (int64_t ci = 0; ci < cin_g; ++ci)
        s += x.item(ravel({n, ih, iw, g * cin_g + ci}, x.shape())) * w.item(ravel({kh, kw, ci, co}, w.shape()));
    }
  return s;
}

// Direct-loop convolution with TensorFlow "same"/"valid" semantics.
CaseReference conv_ref(std::vector<int64_t> stride, std::vector<int64_t> dil, int64_t groups, bool same) {
  return [=](T in) {
    const Tensor &x = in[0], &w = in[1];
    int64_t pt = 0, pl = 0, oh, ow;
    if (same) {
      oh = (x.dim(1) + stride[0] - 1) / stride[0];
      ow = (x.dim(2) + stride[1] - 1) / stride[1];
      pt = std::max<int64_t>((oh - 1) * stride[0] + (w.dim(0) - 1) * dil[0] + 1 - x.dim(1), 0) / 2;
      pl = std::max<int64_t>((ow - 1) * stride[1] + (w.dim(1) - 1) * dil[1] + 1 - x.dim(2), 0) / 2;
    } else {
      oh = (x.dim(1) - (w.dim(0) - 1) * dil[0] - 1) / stride[0] + 1;
      ow = (x.dim(2) - (w.dim(1) - 1) * dil[1] - 1) / stride[1] + 1;
    }
    Tensor y = Tensor::zeros({x.dim(0), oh, ow, w.dim(3)}, DType::f64);
    for (int64_t i = 0; i < y.numel(); ++i) {
      const auto idx = unravel(i, y.shape());
      y.set_item(i, conv_window(x, w, idx[0], idx[1], idx[2], idx[3], stride, dil, pt, pl, groups));
    }
    return y;
  };
}

Tensor matmul_ref(const Tensor& a, const Tensor& b, bool ta, bool tb) {
  const int64_t m = ta ? a.dim(1) : a.dim(0), k = ta ? a.dim(0) : a.dim(1), n = tb ? b.dim(0) : b.dim(1);
  Tensor c = Tensor::zeros({m, n}, DType::f64);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t p = 0; p < k; ++p)
        s += a.item(ta ? p * a.dim(1) + i : i * a.dim(1) + p) * b.item(tb ? j * b.dim(1) + p : p * b.dim(1) + j);
      c.set_item(i * n + j, s);
    }
  return c;
}

// Softmax along the last axis of a 2-D tensor.
Tensor softmax_rows_ref(const Tensor& x, bool log) {
  Tensor y = Tensor::zeros(x.shape(), DType::f64);
  const int64_t rows = x.dim(0), cols = x.dim(1);
  for (int64_t r = 0; r < rows; ++r) {
    double m = -INFINITY, s = 0;
    for (int64_t c = 0; c < cols; ++c) m = std::max(m, x.item(r * cols + c));
    for (int64_t c = 0; c < cols; ++c) s += std::exp(x.item(r * cols + c) - m);
    for (int64_t c = 0; c < cols; ++c) {
      const double v = x.item(r * cols + c) - m - std::log(s);
      y.set_item(r * cols + c, log ? v : std::exp(v));
    }
  }
  return y;
}

// Pushes b away from a wherever |a - b| < gap, so max/min/comparisons have no ties.
void separate(std::vector<Tensor>& xs, double gap = 0.05) {
  const Shape s = broadcast_shapes(xs[0].shape(), xs[1].shape());
  for (int64_t i = 0; i < numel(s); ++i) {
    const auto idx = unravel(i, s);
    const double a = at_broadcast(xs[0], idx);
    std::vector<int64_t> bidx(xs[1].rank());
    const size_t lead = idx.size() - xs[1].rank();
    for (size_t d = 0; d < bidx.size(); ++d) bidx[d] = xs[1].dim(d) == 1 ? 0 : idx[lead + d];
    const int64_t bi = ravel(bidx, xs[1].shape());
    const double b = xs[1].item(bi);
    if (std::abs(a - b) < gap) xs[1].set_item(bi, a + (b >= a ? gap : -gap) * 2);
  }
}

// The soft quantizer's vjp from its derivative: with p = softmax(-(x - c)²) and
// s = Σ p·c, ds/dx = Σ_k p_k (c_k - s) · -2(x - c_k) and ds/dc_k = p_k + p_k (c_k - s) · 2(x - c_k).
Tensor quantize_backward_ref(const Tensor& x, const Tensor& c, const Tensor& g, int64_t wrt) {
  const int64_t n = x.numel(), j = c.numel();
  Tensor y = Tensor::zeros(wrt == 0 ? x.shape() : c.shape(), DType::f64);
  for (int64_t i = 0; i < n; ++i) {
    std::vector<double> p(static_cast<size_t>(j));
    double total = 0, soft = 0;
    for (int64_t k = 0; k < j; ++k) {
      const double d = x.item(i) - c.item(k);
      p[static_cast<size_t>(k)] = std::exp(-d * d);
      total += p[static_cast<size_t>(k)];
    }
    for (int64_t k = 0; k < j; ++k) soft += (p[static_cast<size_t>(k)] /= total) * c.item(k);
    double gx = 0;
    for (int64_t k = 0; k < j; ++k) {
      const double pk = p[static_cast<size_t>(k)], d = x.item(i) - c.item(k);
      gx += pk * (c.item(k) - soft) * -2 * d;
      if (wrt == 1) y.set_item(k, y.item(k) + g.item(i) * (pk + pk * (c.item(k) - soft) * 2 * d));
    }
    if (wrt == 0) y.set_item(i, g.item(i) * gx);
  }
  return y;
}

// attribution_stats' vjp from its definition: per sample, d/dI of Σ_{c<K} I·g0 + Σ I·g1 +
// (max_{c≥K} I − min_{c<K} I)·g2, the extremes' share split among ties, times d|δ·a|.
Tensor attribution_stats_backward_ref(const Tensor& delta, const Tensor& a, const Tensor& g, int64_t k,
                                      int64_t wrt) {
  const int64_t b = delta.dim(0), c = delta.dim(3), per = delta.numel() / b;
  Tensor y = Tensor::zeros(delta.shape(), DType::f64);
  for (int64_t s = 0; s < b; ++s) {
    double worst = -INFINITY, weakest = INFINITY;
    int64_t worst_n = 0, weakest_n = 0;
    auto imp = [&](int64_t i) { return std::abs(delta.item(s * per + i) * a.item(s * per + i)); };
    for (int64_t i = 0; i < per; ++i)
      (i % c < k ? weakest : worst) = i % c < k ? std::min(weakest, imp(i)) : std::max(worst, imp(i));
    for (int64_t i = 0; i < per; ++i) {
      if (i % c < k) weakest_n += imp(i) == weakest;
      else worst_n += imp(i) == worst;
    }
    for (int64_t i = 0; i < per; ++i) {
      const bool local = i % c < k;
      double gi = g.item(s * 3 + 1);
      if (local) gi += g.item(s * 3) - (imp(i) == weakest ? g.item(s * 3 + 2) / static_cast<double>(weakest_n) : 0.0);
      else gi += imp(i) == worst ? g.item(s * 3 + 2) / static_cast<double>(worst_n) : 0.0;
      const double m = delta.item(s * per + i) * a.item(s * per + i);
      const double other = wrt == 0 ? a.item(s * per + i) : delta.item(s * per + i);
      y.set_item(s * per + i, gi * static_cast<double>((0 < m) - (m < 0)) * other);
    }
  }
  return y;
}

// Conv attributes of a conv2d node, for building its gradient ops directly.
Attrs conv_attrs(std::vector<int64_t> stride, std::vector<int64_t> dil, int64_t groups, std::vector<int64_t> pads) {
  return Attrs{{"stride", std::move(stride)}, {"dilation", std::move(dil)}, {"groups", groups}, {"pads", std::move(pads)}};
}

OpCase conv_case(const std::string& name, Shape x, Shape w, std::vector<int64_t> stride, std::vector<int64_t> dil,
                 int64_t groups, ops::Padding padding) {
  OpCase c;
  c.name = name;
  c.inputs = {in(std::move(x)), in(std::move(w))};
  c.build = [=](Graph&, V v) {
    ops::Conv2dOptions o;
    o.stride = stride;
    o.dilation = dil;
    o.groups = groups;
    o.padding = padding;
    return ops::conv2d(v[0], v[1], o);
  };
  c.reference = conv_ref(stride, dil, groups, padding == ops::Padding::same);
  c.covers = {"conv2d", "conv2d_backward_input", "conv2d_backward_filter"};
  return c;
}

std::vector<OpCase> build_cases() {
  using namespace ops;
  std::vector<OpCase> cs;
  auto add = [&](OpCase c) { cs.push_back(std::move(c)); };

  // ---- unary elementwise
  add({"neg", {in({3, 5})}, [](Graph&, V v) { return neg(v[0]); }, unary_ref([](double x) { return -x; }), {"neg"}});
  add({"abs", {with_kinks({3, 5}, {0.0})}, [](Graph&, V v) { return abs(v[0]); },
       unary_ref([](double x) { return std::abs(x); }), {"abs", "sign"}});
  add({"exp", {in({3, 5})}, [](Graph&, V v) { return exp(v[0]); }, unary_ref([](double x) { return std::exp(x); }),
       {"exp"}});
  add({"log", {in({3, 5}, 0.2, 2.0)}, [](Graph&, V v) { return log(v[0]); },
       unary_ref([](double x) { return std::log(x); }), {"log"}});
  add({"sqrt", {in({3, 5}, 0.2, 2.0)}, [](Graph&, V v) { return sqrt(v[0]); },
       unary_ref([](double x) { return std::sqrt(x); }), {"sqrt"}});
  add({"rsqrt", {in({3, 5}, 0.2, 2.0)}, [](Graph&, V v) { return rsqrt(v[0]); },
       unary_ref([](double x) { return 1.0 / std::sqrt(x); }), {"rsqrt"}});
  add({"sigmoid", {in({3, 5}, -4.0, 4.0)}, [](Graph&, V v) { return sigmoid(v[0]); },
       unary_ref([](double x) { return 1.0 / (1.0 + std::exp(-x)); }), {"sigmoid"}});
  add({"tanh", {in({3, 5}, -2.0, 2.0)}, [](Graph&, V v) { return tanh(v[0]); },
       unary_ref([](double x) { return std::tanh(x); }), {"tanh"}});
  add({"clamp", {with_kinks({4, 5}, {-0.5, 0.5})}, [](Graph&, V v) { return clamp(v[0], -0.5, 0.5); },
       unary_ref([](double x) { return std::min(0.5, std::max(-0.5, x)); }), {"clamp", "clamp_grad"}});
  {
    OpCase c{"clamp_grad", {with_kinks({4, 5}, {-0.5, 0.5}), in({4, 5})},
             [](Graph&, V v) { return clamp_grad(v[0], v[1] * v[1], -0.5, 0.5); },
             binary_ref([](double x, double g) { return x < -0.5 || x > 0.5 ? 0.0 : g * g; }), {"clamp_grad"}};
    add(c);
  }
  add({"relu", {with_kinks({4, 5}, {0.0})}, [](Graph&, V v) { return relu(v[0]); },
       unary_ref([](double x) { return std::max(0.0, x); }), {"maximum"}});
  add({"relu6", {with_kinks({4, 5}, {0.0, 6.0}, -2.0, 8.0)}, [](Graph&, V v) { return relu6(v[0]); },
       unary_ref([](double x) { return std::min(6.0, std::max(0.0, x)); }), {"clamp"}});
  add({"silu", {in({3, 5}, -3.0, 3.0)}, [](Graph&, V v) { return silu(v[0]); },
       unary_ref([](double x) { return x / (1.0 + std::exp(-x)); }), {"sigmoid", "mul"}});
  add({"iota_weights", {in({3, 4})}, [](Graph& g, V v) { return v[0] * iota(g, 4, v[0].dtype()); },
       [](T x) {
         Tensor y = Tensor::zeros({3, 4}, DType::f64);
         for (int64_t i = 0; i < 12; ++i) y.set_item(i, x[0].item(i) * static_cast<double>(i % 4));
         return y;
       },
       {"iota"}});
  add({"sign_times_x", {with_kinks({3, 5}, {0.0})}, [](Graph&, V v) { return sign(v[0]) * v[0]; },
       unary_ref([](double x) { return std::abs(x); }), {"sign"}});

  // ---- binary elementwise with broadcasting
  add({"add_broadcast", {in({3, 5}), in({5})}, [](Graph&, V v) { return v[0] + v[1]; },
       binary_ref([](double a, double b) { return a + b; }), {"add"}});
  add({"sub_broadcast", {in({2, 1, 3}), in({4, 1})}, [](Graph&, V v) { return v[0] - v[1]; },
       binary_ref([](double a, double b) { return a - b; }), {"sub"}});
  add({"mul_broadcast", {in({2, 3, 1}), in({1, 3, 4})}, [](Graph&, V v) { return v[0] * v[1]; },
       binary_ref([](double a, double b) { return a * b; }), {"mul"}});
  add({"div_broadcast", {in({3, 5}), in({3, 1}, 0.5, 2.0)}, [](Graph&, V v) { return v[0] / v[1]; },
       binary_ref([](double a, double b) { return a / b; }), {"div"}});
  {
    OpCase c{"maximum", {in({3, 5}), in({3, 5})}, [](Graph&, V v) { return maximum(v[0], v[1]); },
             binary_ref([](double a, double b) { return std::max(a, b); }), {"maximum", "greater_equal", "where"}};
    c.adjust = [](std::vector<Tensor>& xs) { separate(xs); };
    add(c);
    OpCase d{"minimum_broadcast", {in({3, 5}), in({5})}, [](Graph&, V v) { return minimum(v[0], v[1]); },
             binary_ref([](double a, double b) { return std::min(a, b); }), {"minimum", "less_equal", "where"}};
    d.adjust = [](std::vector<Tensor>& xs) { separate(xs); };
    add(d);
  }
  // Comparisons route the gradient through `where`; their own derivative is zero.
  const std::pair<const char*, std::function<double(double, double)>> comparisons[] = {
      {"equal", [](double a, double b) { return double(a == b); }},
      {"less", [](double a, double b) { return double(a < b); }},
      {"less_equal", [](double a, double b) { return double(a <= b); }},
      {"greater", [](double a, double b) { return double(a > b); }},
      {"greater_equal", [](double a, double b) { return double(a >= b); }},
  };
  for (const auto& [op, f] : comparisons) {
    const std::string name = op;
    OpCase c;
    c.name = "where_" + name;
    c.inputs = {in({4, 3}), in({4, 3})};
    c.build = [name](Graph& g, V v) {
      // Compare b with itself for `equal` on half the elements, so both branches run.
      Value rhs = name == "equal" ? where(greater(v[0], scalar_like(v[0], 0.0)), v[0], v[1]) : v[1];
      Value mask = Value(&g, g.add(name, {v[0].id(), rhs.id()}));
      return where(mask, v[0] * v[1], v[0] + v[1]) + cast(mask, v[0].dtype()) * v[0];
    };
    c.reference = [name, f](T x) {
      return map_ref({x[0], x[1]}, [&](const std::vector<double>& a) {
        const double rhs = name == "equal" ? (a[0] > 0 ? a[0] : a[1]) : a[1];
        const double m = f(a[0], rhs);
        return (m != 0 ? a[0] * a[1] : a[0] + a[1]) + m * a[0];
      });
    };
    c.covers = {name, "where", "cast"};
    c.adjust = [](std::vector<Tensor>& xs) { separate(xs); };
    add(c);
  }

  // ---- reductions
  add({"sum_axis1", {in({3, 4, 5})}, [](Graph&, V v) { return sum(v[0], {1}); },
       [](T x) { return reduce_ref(x[0], {1}, false, 0, std::plus<double>()); }, {"sum", "broadcast_to", "reshape"}});
  add({"sum_axes02_keepdims", {in({3, 4, 5})}, [](Graph&, V v) { return sum(v[0], {0, 2}, true); },
       [](T x) { return reduce_ref(x[0], {0, 2}, true, 0, std::plus<double>()); }, {"sum"}});
  add({"sum_all", {in({3, 5})}, [](Graph&, V v) { return sum(v[0]); },
       [](T x) { return reduce_ref(x[0], {}, false, 0, std::plus<double>()); }, {"sum"}});
  add({"mean_axes12", {in({2, 3, 5, 4})}, [](Graph&, V v) { return mean(v[0], {1, 2}); },
       [](T x) {
         Tensor s = reduce_ref(x[0], {1, 2}, false, 0, std::plus<double>());
         for (int64_t i = 0; i < s.numel(); ++i) s.set_item(i, s.item(i) / 15.0);
         return s;
       },
       {"sum", "mul"}});
  add({"max_axis1", {in({3, 5, 2})}, [](Graph&, V v) { return max(v[0], {1}); },
       [](T x) { return reduce_ref(x[0], {1}, false, -INFINITY, [](double a, double b) { return std::max(a, b); }); },
       {"max", "equal"}});
  add({"max_leading_axes_keepdims", {in({4, 3, 5})}, [](Graph&, V v) { return max(v[0], {0, 1}, true); },
       [](T x) { return reduce_ref(x[0], {0, 1}, true, -INFINITY, [](double a, double b) { return std::max(a, b); }); },
       {"max"}});
  add({"sum_leading_axes", {in({5, 2, 3})}, [](Graph&, V v) { return sum(v[0], {0}); },
       [](T x) { return reduce_ref(x[0], {0}, false, 0, std::plus<double>()); }, {"sum"}});
  add({"min_axes02", {in({3, 4, 5})}, [](Graph&, V v) { return min(v[0], {0, 2}); },
       [](T x) { return reduce_ref(x[0], {0, 2}, false, INFINITY, [](double a, double b) { return std::min(a, b); }); },
       {"min"}});
  {
    // The quantizer's pattern: the table entry nearest each value, c[argmin_j |x - c_j|].
    OpCase c;
    c.name = "argmin_gather";
    c.inputs = {in({4, 3}), in({5})};
    c.build = [](Graph&, V v) {
      Value d = abs(reshape(v[0], {4, 3, 1}) - v[1]);
      return gather(v[1], argmin(d, -1), 0) * v[0];
    };
    c.reference = [](T x) {
      Tensor y = Tensor::zeros({4, 3}, DType::f64);
      for (int64_t i = 0; i < 12; ++i) {
        int64_t best = 0;
        for (int64_t j = 1; j < 5; ++j)
          if (std::abs(x[0].item(i) - x[1].item(j)) < std::abs(x[0].item(i) - x[1].item(best))) best = j;
        y.set_item(i, x[1].item(best) * x[0].item(i));
      }
      return y;
    };
    c.covers = {"argmin", "gather", "gather_backward"};
    add(c);
  }

  // ---- layout
  {
    OpCase c{"where_broadcast_condition", {in({3, 1}), in({3, 4}), in({4})},
             [](Graph&, V v) { return where(greater(v[0], scalar_like(v[0], 0.0)), v[1], v[2] * v[2]); },
             [](T x) {
               return map_ref({x[0], x[1], x[2]},
                              [](const std::vector<double>& a) { return a[0] > 0 ? a[1] : a[2] * a[2]; });
             },
             {"where", "greater"}};
    c.inputs[0].kinks = {0.0};
    add(c);
  }
  add({"concat_axis0", {in({2, 3}), in({1, 3})}, [](Graph&, V v) { return concat({v[0], v[1]}, 0); },
       [](T x) {
         Tensor y = Tensor::zeros({3, 3}, DType::f64);
         for (int64_t i = 0; i < 9; ++i) y.set_item(i, i < 6 ? x[0].item(i) : x[1].item(i - 6));
         return y;
       },
       {"concat"}});
  add({"broadcast_to", {in({3, 1})}, [](Graph&, V v) { return broadcast_to(v[0], {2, 3, 4}); },
       [](T x) { return map_ref({x[0], Tensor::zeros({2, 3, 4}, DType::f64)},
                                [](const std::vector<double>& a) { return a[0]; }); },
       {"broadcast_to"}});
  add({"reshape", {in({2, 3, 4})}, [](Graph&, V v) { return reshape(v[0], {6, 4}) * reshape(v[0], {6, 4}); },
       [](T x) {
         Tensor y = Tensor::zeros({6, 4}, DType::f64);
         for (int64_t i = 0; i < 24; ++i) y.set_item(i, x[0].item(i) * x[0].item(i));
         return y;
       },
       {"reshape"}});
  add({"transpose", {in({2, 3, 4})}, [](Graph&, V v) { return transpose(v[0], {2, 0, 1}); },
       [](T x) {
         Tensor y = Tensor::zeros({4, 2, 3}, DType::f64);
         for (int64_t i = 0; i < 24; ++i) {
           const auto id = unravel(i, {4, 2, 3});
           y.set_item(i, x[0].item(ravel({id[1], id[2], id[0]}, {2, 3, 4})));
         }
         return y;
       },
       {"transpose"}});
  add({"slice", {in({4, 5, 3})}, [](Graph&, V v) { return slice(v[0], {1, 0, 1}, {3, 4, 3}); },
       [](T x) {
         Tensor y = Tensor::zeros({2, 4, 2}, DType::f64);
         for (int64_t i = 0; i < y.numel(); ++i) {
           const auto id = unravel(i, y.shape());
           y.set_item(i, x[0].item(ravel({id[0] + 1, id[1], id[2] + 1}, {4, 5, 3})));
         }
         return y;
       },
       {"slice", "pad"}});
  add({"pad", {in({2, 3})}, [](Graph&, V v) { return pad(v[0], {1, 0}, {2, 3}); },
       [](T x) {
         Tensor y = Tensor::zeros({5, 6}, DType::f64);
         for (int64_t i = 0; i < 6; ++i) y.set_item((i / 3 + 1) * 6 + i % 3, x[0].item(i));
         return y;
       },
       {"pad", "slice"}});
  add({"concat_channels", {in({2, 3, 2}), in({2, 3, 1}), in({2, 3, 4})},
       [](Graph&, V v) { return concat({v[0], v[1], v[2]}, -1); },
       [](T x) {
         Tensor y = Tensor::zeros({2, 3, 7}, DType::f64);
         for (int64_t i = 0; i < y.numel(); ++i) {
           const auto id = unravel(i, y.shape());
           const int64_t c = id[2];
           const Tensor& src = c < 2 ? x[0] : c < 3 ? x[1] : x[2];
           const int64_t cc = c < 2 ? c : c < 3 ? c - 2 : c - 3;
           y.set_item(i, src.item(ravel({id[0], id[1], cc}, src.shape())));
         }
         return y;
       },
       {"concat", "slice"}});

  // ---- convolution family
  add(conv_case("conv2d_valid", {2, 5, 7, 3}, {3, 3, 3, 4}, {1, 1}, {1, 1}, 1, Padding::valid));
  add(conv_case("conv2d_stride2_same", {2, 7, 6, 3}, {3, 3, 3, 5}, {2, 2}, {1, 1}, 1, Padding::same));
  add(conv_case("conv2d_dilation2_same", {1, 7, 7, 2}, {3, 3, 2, 3}, {1, 1}, {2, 2}, 1, Padding::same));
  add(conv_case("conv2d_groups2_same", {2, 5, 5, 4}, {3, 3, 2, 6}, {1, 1}, {1, 1}, 2, Padding::same));
  add(conv_case("conv2d_stride_hw_kernel_2x3", {1, 6, 7, 2}, {2, 3, 2, 3}, {2, 1}, {1, 2}, 1, Padding::same));
  add(conv_case("depthwise_stride3_same", {2, 7, 8, 3}, {3, 3, 1, 3}, {3, 3}, {1, 1}, 3, Padding::same));
  add(conv_case("depthwise_multiplier2_stride2", {1, 7, 6, 3}, {3, 3, 1, 6}, {2, 2}, {1, 1}, 3, Padding::valid));
  add(conv_case("depthwise_dilation2_same", {1, 7, 7, 4}, {3, 3, 1, 4}, {1, 1}, {2, 2}, 4, Padding::same));
  add(conv_case("pointwise_stride2_same", {1, 5, 6, 3}, {1, 1, 3, 4}, {2, 2}, {1, 1}, 1, Padding::same));
  add(conv_case("pointwise", {2, 3, 5, 4}, {1, 1, 4, 3}, {1, 1}, {1, 1}, 1, Padding::valid));
  {
    // The gradient ops as functions of their own inputs, so their vjps are checked too.
    const Attrs a = conv_attrs({2, 2}, {1, 1}, 1, {0, 1, 1, 1});
    add({"conv2d_backward_input", {in({2, 3, 3, 4}), in({3, 3, 3, 4})},
         [a](Graph&, V v) { return conv2d_backward_input(v[0], v[1], a, {2, 6, 5, 3}); }, nullptr,
         {"conv2d_backward_input", "conv2d", "conv2d_backward_filter"}});
    add({"conv2d_backward_filter", {in({2, 6, 5, 3}), in({2, 3, 3, 4})},
         [a](Graph&, V v) { return conv2d_backward_filter(v[0], v[1], a, {3, 3, 3, 4}); }, nullptr,
         {"conv2d_backward_filter", "conv2d", "conv2d_backward_input"}});
    const Attrs dw = conv_attrs({1, 1}, {1, 1}, 3, {1, 1, 1, 1});
    add({"depthwise_backward_input", {in({1, 4, 5, 3}), in({3, 3, 1, 3})},
         [dw](Graph&, V v) { return conv2d_backward_input(v[0], v[1], dw, {1, 4, 5, 3}); }, nullptr,
         {"conv2d_backward_input"}});
    add({"depthwise_backward_filter", {in({1, 4, 5, 3}), in({1, 4, 5, 3})},
         [dw](Graph&, V v) { return conv2d_backward_filter(v[0], v[1], dw, {3, 3, 1, 3}); }, nullptr,
         {"conv2d_backward_filter"}});
  }

  // ---- dense
  for (int t = 0; t < 4; ++t) {
    const bool ta = t & 1, tb = t & 2;
    add({"matmul_t" + std::to_string(ta) + std::to_string(tb),
         {in(ta ? Shape{4, 3} : Shape{3, 4}), in(tb ? Shape{5, 4} : Shape{4, 5})},
         [ta, tb](Graph&, V v) { return matmul(v[0], v[1], ta, tb); },
         [ta, tb](T x) { return matmul_ref(x[0], x[1], ta, tb); }, {"matmul"}});
  }
  add({"dense", {in({3, 4}), in({4, 5}), in({5})}, [](Graph&, V v) { return dense(v[0], v[1], v[2]); },
       [](T x) {
         Tensor y = matmul_ref(x[0], x[1], false, false);
         for (int64_t i = 0; i < y.numel(); ++i) y.set_item(i, y.item(i) + x[2].item(i % 5));
         return y;
       },
       {"matmul", "add"}});

  // ---- softmax family and losses
  add({"softmax", {in({3, 5}, -2.0, 2.0)}, [](Graph&, V v) { return softmax(v[0], -1); },
       [](T x) { return softmax_rows_ref(x[0], false); }, {"softmax"}});
  add({"softmax_middle_axis", {in({2, 4, 3}, -2.0, 2.0)}, [](Graph&, V v) { return softmax(v[0], 1); }, nullptr,
       {"softmax"}});
  add({"log_softmax_axis0", {in({4, 3}, -2.0, 2.0)}, [](Graph&, V v) { return log_softmax(v[0], 0); }, nullptr,
       {"log_softmax"}});
  add({"softmax_axis0", {in({4, 3}, -2.0, 2.0)}, [](Graph&, V v) { return softmax(v[0], 0); }, nullptr, {"softmax"}});
  add({"log_softmax", {in({3, 5}, -2.0, 2.0)}, [](Graph&, V v) { return log_softmax(v[0], 1); },
       [](T x) { return softmax_rows_ref(x[0], true); }, {"log_softmax", "exp"}});
  add({"cross_entropy", {in({4, 5}, -2.0, 2.0), ints({4}, 0, 4)},
       [](Graph&, V v) { return cross_entropy(v[0], v[1]); },
       [](T x) {
         Tensor ls = softmax_rows_ref(x[0], true);
         Tensor y = Tensor::zeros({4}, DType::f64);
         for (int64_t i = 0; i < 4; ++i) y.set_item(i, -ls.item(i * 5 + static_cast<int64_t>(x[1].item(i))));
         return y;
       },
       {"softmax_cross_entropy", "one_hot", "log_softmax", "exp"}});
  // Large logits (the max-subtracted forms stay finite) and a class count above a warp.
  add({"cross_entropy_wide_large_logits", {in({3, 37}, -40.0, 40.0), ints({3}, 0, 36)},
       [](Graph&, V v) { return cross_entropy(v[0], v[1]) * scalar_like(v[0], 0.25); },
       [](T x) {
         Tensor ls = softmax_rows_ref(x[0], true);
         Tensor y = Tensor::zeros({3}, DType::f64);
         for (int64_t i = 0; i < 3; ++i) y.set_item(i, -0.25 * ls.item(i * 37 + static_cast<int64_t>(x[1].item(i))));
         return y;
       },
       {"softmax_cross_entropy"}});
  add({"cross_entropy_reference", {in({4, 5}, -2.0, 2.0), ints({4}, 0, 4)},
       [](Graph&, V v) { return cross_entropy_reference(v[0], v[1]); }, nullptr, {"one_hot", "log_softmax"}});
  add({"gather_axis0", {in({4, 3}), ints({5}, 0, 3)}, [](Graph&, V v) { return gather(v[0], v[1], 0); },
       [](T x) {
         Tensor y = Tensor::zeros({5, 3}, DType::f64);
         for (int64_t i = 0; i < 15; ++i) y.set_item(i, x[0].item(static_cast<int64_t>(x[1].item(i / 3)) * 3 + i % 3));
         return y;
       },
       {"gather", "gather_backward"}});
  add({"gather_negative_axis_scalar_index", {in({3, 4}), ints({}, 0, 3)},
       [](Graph&, V v) { return gather(v[0], v[1], -1); }, nullptr, {"gather"}});
  add({"gather_axis1_matrix_index", {in({2, 4, 3}), ints({2, 2}, 0, 3)},
       [](Graph&, V v) { return gather(v[0], v[1], 1); }, nullptr, {"gather"}});
  add({"gather_backward", {in({3, 5}), ints({5}, 0, 3)},
       [](Graph&, V v) { return gather_backward(v[0], v[1], 1, 4); },
       [](T x) {
         Tensor y = Tensor::zeros({3, 4}, DType::f64);
         for (int64_t o = 0; o < 3; ++o)
           for (int64_t i = 0; i < 5; ++i) {
             const int64_t j = o * 4 + static_cast<int64_t>(x[1].item(i));
             y.set_item(j, y.item(j) + x[0].item(o * 5 + i));
           }
         return y;
       },
       {"gather_backward", "gather"}});
  add({"one_hot", {ints({3, 2}, 0, 4), in({3, 2, 5})},
       [](Graph&, V v) { return one_hot(v[0], 5, v[1].dtype()) * v[1]; },
       [](T x) {
         Tensor y = Tensor::zeros({3, 2, 5}, DType::f64);
         for (int64_t i = 0; i < 30; ++i)
           y.set_item(i, static_cast<int64_t>(x[0].item(i / 5)) == i % 5 ? x[1].item(i) : 0.0);
         return y;
       },
       {"one_hot"}});

  // ---- dropout: a fixed mask per (seed, counter), so the op is linear in x
  add({"dropout", {in({4, 7}), ints({}, 3, 3)}, [](Graph&, V v) { return dropout(v[0], v[1], 0.3, 1234); }, nullptr,
       {"dropout_mask"}});

  // ---- normalisation, pooling
  add({"batch_norm_train", {in({4, 3, 3, 5}, -2.0, 2.0), in({5}, 0.5, 1.5), in({5}), in({5}), in({5}, 0.5, 1.5)},
       [](Graph&, V v) { return batch_norm_train(v[0], v[1], v[2], v[3], v[4], 0.99, 1e-3).y; },
       [](T x) {
         Tensor y = Tensor::zeros(x[0].shape(), DType::f64);
         for (int64_t c = 0; c < 5; ++c) {
           double m = 0, var = 0;
           for (int64_t i = c; i < x[0].numel(); i += 5) m += x[0].item(i);
           m /= 36;
           for (int64_t i = c; i < x[0].numel(); i += 5) var += (x[0].item(i) - m) * (x[0].item(i) - m);
           var /= 36;
           for (int64_t i = c; i < x[0].numel(); i += 5)
             y.set_item(i, (x[0].item(i) - m) / std::sqrt(var + 1e-3) * x[1].item(c) + x[2].item(c));
         }
         return y;
       },
       {"rsqrt", "sum", "sub", "mul", "add"}});
  add({"batch_norm_eval", {in({2, 3, 3, 5}), in({5}, 0.5, 1.5), in({5}), in({5}), in({5}, 0.5, 1.5)},
       [](Graph&, V v) { return batch_norm_eval(v[0], v[1], v[2], v[3], v[4], 1e-3); },
       [](T x) {
         return map_ref({x[0], x[1], x[2], x[3], x[4]}, [](const std::vector<double>& a) {
           return (a[0] - a[3]) / std::sqrt(a[4] + 1e-3) * a[1] + a[2];
         });
       },
       {"rsqrt"}});
  add({"global_avg_pool", {in({2, 3, 5, 4})}, [](Graph&, V v) { return global_avg_pool(v[0]); }, nullptr, {"sum"}});

  // ---- a small conv net: conv, BN, SiLU, depthwise, BN, SiLU, pool, dense, CE.
  // Its second-order check is grad(grad(loss)) against differences of the gradient.
  add({"small_convnet",
       {in({3, 6, 6, 2}), ints({3}, 0, 2), in({3, 3, 2, 4}, -0.5, 0.5), in({4}, 0.5, 1.5), in({4}),
        in({3, 3, 1, 4}, -0.5, 0.5), in({4}, 0.5, 1.5), in({4}), in({4, 3}, -0.5, 0.5)},
       [](Graph& g, V v) {
         auto bn = [&](const Value& x, const Value& gamma, const Value& beta) {
           Value zeros = fill(g, 0.0, {x.dim(-1)}, x.dtype()), ones = fill(g, 1.0, {x.dim(-1)}, x.dtype());
           return batch_norm_train(x, gamma, beta, zeros, ones, 0.99, 1e-3).y;
         };
         Conv2dOptions same;
         same.padding = Padding::same;
         Value h = silu(bn(conv2d(v[0], v[2], same), v[3], v[4]));
         Conv2dOptions dw;
         dw.padding = Padding::same;
         dw.stride = {2, 2};
         h = silu(bn(depthwise_conv2d(h, v[5], dw), v[6], v[7]));
         Value logits = matmul(global_avg_pool(h), v[8]);
         return mean(cross_entropy(logits, v[1]));
       },
       nullptr,
       {"conv2d", "sigmoid", "softmax_cross_entropy"}});
  // ---- fused ops of the AgileNN step (the quantizer's straight-through forward is not
  // differentiable in the finite-difference sense; its soft path is, and test_agilenn
  // checks the fused op against its decomposition)
  add({"attribution_stats", {in({2, 3, 3, 5}), in({2, 3, 3, 5})},
       [](Graph&, V v) { return attribution_stats(v[0], v[1], 2); },
       [](T x) {
         Tensor y = Tensor::zeros({2, 3}, DType::f64);
         for (int64_t b = 0; b < 2; ++b) {
           double local = 0, total = 0, worst = -INFINITY, weakest = INFINITY;
           for (int64_t i = 0; i < 45; ++i) {
             const double v = std::abs(x[0].item(b * 45 + i) * x[1].item(b * 45 + i));
             total += v;
             if (i % 5 < 2) local += v, weakest = std::min(weakest, v);
             else worst = std::max(worst, v);
           }
           y.set_item(b * 3, local);
           y.set_item(b * 3 + 1, total);
           y.set_item(b * 3 + 2, worst - weakest);
         }
         return y;
       },
       {"attribution_stats", "attribution_stats_backward", "abs", "max", "min", "concat"}});
  // Its fused vjp as a function of its own inputs (delta, a, g), for each wrt: the first
  // order here is the decomposition's second, the second order its third.
  for (int64_t wrt : {0, 1}) {
    add({"attribution_stats_backward_wrt" + std::to_string(wrt),
         {in({2, 3, 2, 5}), in({2, 3, 2, 5}), in({2, 3})},
         [wrt](Graph&, V v) { return attribution_stats_backward(v[0], v[1], v[2], 3, wrt); },
         [wrt](T x) { return attribution_stats_backward_ref(x[0], x[1], x[2], 3, wrt); },
         {"attribution_stats_backward", "abs", "max", "min"}});
  }
  add({"quantize_soft", {in({3, 4}, 0.0, 6.0), in({5}, 0.5, 5.5)},
       [](Graph&, V v) { return quantize_soft(v[0], v[1]); }, nullptr, {"softmax"}});
  // quantize's fused vjp (the soft path's) as a function of (x, centroids, g): smooth, so
  // finite differences check it and, through its decomposition, its own vjp.
  for (int64_t wrt : {0, 1}) {
    add({"quantize_backward_wrt" + std::to_string(wrt),
         {in({3, 4}, 0.0, 6.0), in({5}, 0.5, 5.5), in({3, 4})},
         [wrt](Graph&, V v) { return quantize_backward(v[0], v[1], v[2], wrt); },
         [wrt](T x) { return quantize_backward_ref(x[0], x[1], x[2], wrt); },
         {"quantize_backward", "softmax"}});
  }
  return cs;
}

}  // namespace

const std::vector<OpCase>& op_cases() {
  static const std::vector<OpCase> cases = build_cases();
  return cases;
}

}  // namespace agilenn::testing
