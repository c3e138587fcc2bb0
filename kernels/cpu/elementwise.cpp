// fill, unary math, clamp, binary arithmetic, comparisons, where, cast, stop_gradient;
// the per-element math is kernels/shared/elementwise.h.
#include <algorithm>
#include <type_traits>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/shared/elementwise.h"

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

// Kernels of an op over clamp's range [lo, hi] (its attributes): y = Op<T>{lo, hi}(x) for
// one input, (x, other) for two of the same shape.
template <template <class> class Op>
void range_kernel(KernelTable& t, const std::string& op) {
  t.add(op, [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    const double lo = node.attrs.f("lo"), hi = node.attrs.f("hi");
    dispatch_float(out.dtype(), node, [&](auto tag) {
      using T = decltype(tag);
      const Op<T> fn{static_cast<T>(lo), static_cast<T>(hi)};
      const T* x = in[0].data<T>();
      T* y = out.data<T>();
      const int64_t n = out.numel();
      parallel_for(n, n, [&](int64_t begin, int64_t end) {
        if constexpr (std::is_invocable_v<Op<T>, T>) {
          for (int64_t i = begin; i < end; ++i) y[i] = fn(x[i]);
        } else {
          const T* other = in[1].data<T>();
          for (int64_t i = begin; i < end; ++i) y[i] = fn(x[i], other[i]);
        }
      });
    });
  });
}

}  // namespace

void register_elementwise(KernelTable& t) {
  t.add("fill", [](const Node& node, std::span<const Tensor>, Tensor& out) {
    dispatch_any(out.dtype(), [&](auto tag) {
      std::fill_n(out.data<decltype(tag)>(), out.numel(), static_cast<decltype(tag)>(node.attrs.f("value")));
    });
  });
  t.add("iota", [](const Node&, std::span<const Tensor>, Tensor& out) {
    dispatch_any(out.dtype(), [&](auto tag) {
      using T = decltype(tag);
      T* y = out.data<T>();
      for (int64_t i = 0; i < out.numel(); ++i) y[i] = static_cast<T>(i);
    });
  });

  unary_kernel(t, "neg", kernels::Neg{});
  unary_kernel(t, "abs", kernels::Abs{});
  unary_kernel(t, "sign", kernels::Sign{});
  unary_kernel(t, "exp", kernels::Exp{});
  unary_kernel(t, "log", kernels::Log{});
  unary_kernel(t, "sqrt", kernels::Sqrt{});
  unary_kernel(t, "rsqrt", kernels::Rsqrt{});
  unary_kernel(t, "sigmoid", kernels::Sigmoid{});
  unary_kernel(t, "tanh", kernels::Tanh{});
  unary_kernel(t, "stop_gradient", kernels::Identity{});
  range_kernel<kernels::Clamp>(t, "clamp");
  range_kernel<kernels::ClampGrad>(t, "clamp_grad");

  binary_kernel(t, "add", kernels::Add{});
  binary_kernel(t, "sub", kernels::Sub{});
  binary_kernel(t, "mul", kernels::Mul{});
  binary_kernel(t, "div", kernels::Div{});
  binary_kernel(t, "maximum", kernels::Maximum{});
  binary_kernel(t, "minimum", kernels::Minimum{});

  comparison_kernel(t, "equal", kernels::Equal{});
  comparison_kernel(t, "less", kernels::Less{});
  comparison_kernel(t, "less_equal", kernels::LessEqual{});
  comparison_kernel(t, "greater", kernels::Greater{});
  comparison_kernel(t, "greater_equal", kernels::GreaterEqual{});

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
