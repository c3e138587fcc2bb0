// fill, unary math, clamp, binary arithmetic, comparisons, where, cast, stop_gradient.
#include <cmath>
#include <cstring>

#include "kernels/cpu/cpu_kernels.h"

namespace agilenn::cpu {
namespace {

template <class F>
void unary_kernel(KernelTable& t, const std::string& op, F fn) {
  t.add(op, [fn](const Node& node, std::span<const Tensor> in, Tensor& out) {
    dispatch_float(out.dtype(), node, [&](auto tag) {
      using T = decltype(tag);
      const T* x = in[0].data<T>();
      T* y = out.data<T>();
      const int64_t n = out.numel();
      parallel_for(n, n, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) y[i] = fn(x[i]);
      });
    });
  });
}

template <class F>
void binary_kernel(KernelTable& t, const std::string& op, F fn) {
  t.add(op, [fn](const Node& node, std::span<const Tensor> in, Tensor& out) {
    dispatch_float(out.dtype(), node, [&](auto tag) {
      using T = decltype(tag);
      const T* a = in[0].data<T>();
      const T* b = in[1].data<T>();
      T* y = out.data<T>();
      broadcast_loop<2>(out.shape(),
                        {broadcast_strides(in[0].shape(), out.shape()), broadcast_strides(in[1].shape(), out.shape())},
                        [&](int64_t i, const std::array<int64_t, 2>& o) { y[i] = fn(a[o[0]], b[o[1]]); });
    });
  });
}

template <class F>
void comparison_kernel(KernelTable& t, const std::string& op, F fn) {
  t.add(op, [fn](const Node&, std::span<const Tensor> in, Tensor& out) {
    dispatch_any(in[0].dtype(), [&](auto tag) {
      using T = decltype(tag);
      const T* a = in[0].data<T>();
      const T* b = in[1].data<T>();
      uint8_t* y = out.data<uint8_t>();
      broadcast_loop<2>(out.shape(),
                        {broadcast_strides(in[0].shape(), out.shape()), broadcast_strides(in[1].shape(), out.shape())},
                        [&](int64_t i, const std::array<int64_t, 2>& o) { y[i] = fn(a[o[0]], b[o[1]]) ? 1 : 0; });
    });
  });
}

// Kernels of clamp's [lo, hi] range: y = fn(x, other, lo, hi) per element, where other is
// the second input's element (x itself for a single-input op).
template <class F>
void range_kernel(KernelTable& t, const std::string& op, F fn) {
  t.add(op, [fn](const Node& node, std::span<const Tensor> in, Tensor& out) {
    const double lo = node.attrs.f("lo"), hi = node.attrs.f("hi");
    dispatch_float(out.dtype(), node, [&](auto tag) {
      using T = decltype(tag);
      const T l = static_cast<T>(lo), h = static_cast<T>(hi);
      const T* x = in[0].data<T>();
      const T* other = in.size() > 1 ? in[1].data<T>() : x;
      T* y = out.data<T>();
      const int64_t n = out.numel();
      parallel_for(n, n, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) y[i] = fn(x[i], other[i], l, h);
      });
    });
  });
}

template <class T>
T sign_of(T v) {
  return static_cast<T>((T(0) < v) - (v < T(0)));
}

}  // namespace

void register_elementwise(KernelTable& t) {
  t.add("fill", [](const Node& node, std::span<const Tensor>, Tensor& out) {
    const double v = node.attrs.f("value");
    dispatch_any(out.dtype(), [&](auto tag) {
      using T = decltype(tag);
      T* y = out.data<T>();
      const T tv = static_cast<T>(v);
      for (int64_t i = 0; i < out.numel(); ++i) y[i] = tv;
    });
  });

  t.add("iota", [](const Node&, std::span<const Tensor>, Tensor& out) {
    dispatch_any(out.dtype(), [&](auto tag) {
      using T = decltype(tag);
      T* y = out.data<T>();
      for (int64_t i = 0; i < out.numel(); ++i) y[i] = static_cast<T>(i);
    });
  });

  unary_kernel(t, "neg", [](auto x) { return -x; });
  unary_kernel(t, "abs", [](auto x) { return std::abs(x); });
  unary_kernel(t, "sign", [](auto x) { return sign_of(x); });
  unary_kernel(t, "exp", [](auto x) { return std::exp(x); });
  unary_kernel(t, "log", [](auto x) { return std::log(x); });
  unary_kernel(t, "sqrt", [](auto x) { return std::sqrt(x); });
  unary_kernel(t, "rsqrt", [](auto x) { return decltype(x)(1) / std::sqrt(x); });
  unary_kernel(t, "sigmoid", [](auto x) {
    using T = decltype(x);
    // Split by sign so exp never overflows.
    if (x >= T(0)) return T(1) / (T(1) + std::exp(-x));
    const T e = std::exp(x);
    return e / (T(1) + e);
  });
  unary_kernel(t, "tanh", [](auto x) { return std::tanh(x); });
  unary_kernel(t, "stop_gradient", [](auto x) { return x; });
  range_kernel(t, "clamp", [](auto x, auto, auto l, auto h) { return x < l ? l : (x > h ? h : x); });
  range_kernel(t, "clamp_grad",
               [](auto x, auto g, auto l, auto h) { return x < l || x > h ? decltype(x)(0) : g; });

  binary_kernel(t, "add", [](auto a, auto b) { return a + b; });
  binary_kernel(t, "sub", [](auto a, auto b) { return a - b; });
  binary_kernel(t, "mul", [](auto a, auto b) { return a * b; });
  binary_kernel(t, "div", [](auto a, auto b) { return a / b; });
  binary_kernel(t, "maximum", [](auto a, auto b) { return a >= b ? a : b; });
  binary_kernel(t, "minimum", [](auto a, auto b) { return a <= b ? a : b; });

  comparison_kernel(t, "equal", [](auto a, auto b) { return a == b; });
  comparison_kernel(t, "less", [](auto a, auto b) { return a < b; });
  comparison_kernel(t, "less_equal", [](auto a, auto b) { return a <= b; });
  comparison_kernel(t, "greater", [](auto a, auto b) { return a > b; });
  comparison_kernel(t, "greater_equal", [](auto a, auto b) { return a >= b; });

  t.add("where", [](const Node&, std::span<const Tensor> in, Tensor& out) {
    dispatch_any(out.dtype(), [&](auto tag) {
      using T = decltype(tag);
      const uint8_t* c = in[0].data<uint8_t>();
      const T* a = in[1].data<T>();
      const T* b = in[2].data<T>();
      T* y = out.data<T>();
      broadcast_loop<3>(out.shape(),
                        {broadcast_strides(in[0].shape(), out.shape()), broadcast_strides(in[1].shape(), out.shape()),
                         broadcast_strides(in[2].shape(), out.shape())},
                        [&](int64_t i, const std::array<int64_t, 3>& o) { y[i] = c[o[0]] ? a[o[1]] : b[o[2]]; });
    });
  });

  t.add("cast", [](const Node&, std::span<const Tensor> in, Tensor& out) {
    dispatch_any(in[0].dtype(), [&](auto from) {
      using S = decltype(from);
      dispatch_any(out.dtype(), [&](auto to) {
        using D = decltype(to);
        const S* x = in[0].data<S>();
        D* y = out.data<D>();
        for (int64_t i = 0; i < out.numel(); ++i) y[i] = static_cast<D>(x[i]);
      });
    });
  });
}

}  // namespace agilenn::cpu
