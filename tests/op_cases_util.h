// Helpers shared by the op-case tables (tests/op_cases_<family>.cpp): input specs and
// naive float64 references with numpy semantics.
#pragma once

#include <cmath>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

#include "engine/ir/shape_util.h"
#include "tests/gradcheck.h"

namespace agilenn::testing::cases {

using V = const std::vector<Value>&;
using T = const std::vector<Tensor>&;
using Cases = std::vector<OpCase>;

inline InputSpec in(Shape s, double lo = -1.0, double hi = 1.0) { return InputSpec{std::move(s), lo, hi}; }
inline InputSpec with_kinks(Shape s, std::vector<double> kinks, double lo = -1.0, double hi = 1.0) {
  InputSpec spec{std::move(s), lo, hi};
  spec.kinks = std::move(kinks);
  return spec;
}
inline InputSpec ints(Shape s, int lo, int hi) {
  InputSpec spec{std::move(s), static_cast<double>(lo), static_cast<double>(hi)};
  spec.int_dtype = DType::i32;
  return spec;
}

// ---- reference helpers (float64, numpy semantics)

inline std::vector<int64_t> unravel(int64_t i, const Shape& s) {
  std::vector<int64_t> idx(s.size());
  for (size_t d = s.size(); d-- > 0;) {
    idx[d] = i % s[d];
    i /= s[d];
  }
  return idx;
}

inline int64_t ravel(const std::vector<int64_t>& idx, const Shape& s) {
  int64_t off = 0;
  for (size_t d = 0; d < s.size(); ++d) off = off * s[d] + idx[d];
  return off;
}

// Value of t at an index of a (possibly larger, broadcast) output shape.
inline double at_broadcast(const Tensor& t, const std::vector<int64_t>& out_idx) {
  const size_t lead = out_idx.size() - t.rank();
  std::vector<int64_t> idx(t.rank());
  for (size_t d = 0; d < t.rank(); ++d) idx[d] = t.dim(d) == 1 ? 0 : out_idx[lead + d];
  return t.item(ravel(idx, t.shape()));
}

inline Tensor map_ref(const std::vector<Tensor>& xs, const std::function<double(const std::vector<double>&)>& f) {
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

inline CaseReference unary_ref(double (*f)(double)) {
  return [f](T x) { return map_ref({x[0]}, [f](const std::vector<double>& a) { return f(a[0]); }); };
}
inline CaseReference binary_ref(std::function<double(double, double)> f) {
  return [f](T x) { return map_ref({x[0], x[1]}, [f](const std::vector<double>& a) { return f(a[0], a[1]); }); };
}

// Reduction of x over `axes` with `op` starting at `init`.
inline Tensor reduce_ref(const Tensor& x, std::vector<int64_t> axes, bool keepdims, double init,
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

inline double conv_window(const Tensor& x, const Tensor& w, int64_t n, int64_t oh, int64_t ow, int64_t co,
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
inline CaseReference conv_ref(std::vector<int64_t> stride, std::vector<int64_t> dil, int64_t groups,
                              ops::Padding padding) {
  return [=](T in) {
    const Tensor &x = in[0], &w = in[1];
    int64_t pt = 0, pl = 0, oh, ow;
    if (padding == ops::Padding::symmetric) {
      pt = (w.dim(0) - 1) * dil[0] / 2;
      pl = (w.dim(1) - 1) * dil[1] / 2;
      oh = (x.dim(1) + 2 * pt - (w.dim(0) - 1) * dil[0] - 1) / stride[0] + 1;
      ow = (x.dim(2) + 2 * pl - (w.dim(1) - 1) * dil[1] - 1) / stride[1] + 1;
    } else if (padding == ops::Padding::same) {
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

inline Tensor matmul_ref(const Tensor& a, const Tensor& b, bool ta, bool tb) {
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
inline Tensor softmax_rows_ref(const Tensor& x, bool log) {
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
inline void separate(std::vector<Tensor>& xs, double gap = 0.05) {
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
inline Tensor quantize_backward_ref(const Tensor& x, const Tensor& c, const Tensor& g, int64_t wrt) {
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
inline Tensor attribution_stats_backward_ref(const Tensor& delta, const Tensor& a, const Tensor& g, int64_t k,
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
inline Attrs conv_attrs(std::vector<int64_t> stride, std::vector<int64_t> dil, int64_t groups,
                        std::vector<int64_t> pads) {
  return Attrs{
      {"stride", std::move(stride)}, {"dilation", std::move(dil)}, {"groups", groups}, {"pads", std::move(pads)}};
}

inline OpCase conv_case(const std::string& name, Shape x, Shape w, std::vector<int64_t> stride,
                        std::vector<int64_t> dil, int64_t groups, ops::Padding padding) {
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
  c.reference = conv_ref(stride, dil, groups, padding);
  c.covers = {"conv2d", "conv2d_backward_input", "conv2d_backward_filter"};
  return c;
}

// Each family's cases, appended in table order.
void add_elementwise_cases(Cases& cs);
void add_reductions_cases(Cases& cs);
void add_layout_cases(Cases& cs);
void add_convolution_cases(Cases& cs);
void add_losses_cases(Cases& cs);
void add_layers_cases(Cases& cs);
void add_agilenn_cases(Cases& cs);

}  // namespace agilenn::testing::cases
