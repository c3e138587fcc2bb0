// fill, iota, unary math, clamp, binary arithmetic, comparisons, where, cast,
// stop_gradient: the GPU twins of kernels/cpu/elementwise.cpp, with the same formulas
// and tie rules. Every op but fill and iota is one strided walk (strided.cuh) applying a
// small functor, so broadcasting is handled once, by the operands' strides: a same-shape
// operand collapses to one contiguous axis and costs no index arithmetic.
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/strided.cuh"

namespace agilenn::cuda {
namespace {

// ---- kernels: per-element functors, run by for_each_kernel (strided.cuh)

template <class T>
struct Fill {
  T value;
  T* y;
  __device__ void operator()(int64_t i) const { y[i] = value; }
};

template <class T>
struct Iota {
  T* y;
  __device__ void operator()(int64_t i) const { y[i] = static_cast<T>(i); }
};

// Per-element math. Float only: the backend computes float32 (dispatch_f32).
struct Neg { __device__ float operator()(float x) const { return -x; } };
struct Abs { __device__ float operator()(float x) const { return fabsf(x); } };
struct Sign {
  __device__ float operator()(float x) const { return static_cast<float>((0.0f < x) - (x < 0.0f)); }
};
struct Exp { __device__ float operator()(float x) const { return expf(x); } };
struct Log { __device__ float operator()(float x) const { return logf(x); } };
struct Sqrt { __device__ float operator()(float x) const { return sqrtf(x); } };
// 1/sqrt rather than rsqrtf: both are correctly rounded, so this matches the CPU bit for bit.
struct Rsqrt { __device__ float operator()(float x) const { return 1.0f / sqrtf(x); } };
struct Sigmoid {
  // Split by sign so exp never overflows (as the CPU).
  __device__ float operator()(float x) const {
    if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
    const float e = expf(x);
    return e / (1.0f + e);
  }
};
struct Tanh { __device__ float operator()(float x) const { return tanhf(x); } };
struct Identity { __device__ float operator()(float x) const { return x; } };
struct Clamp {
  float lo, hi;
  __device__ float operator()(float x) const { return x < lo ? lo : (x > hi ? hi : x); }
};
struct ClampGrad {
  float lo, hi;
  __device__ float operator()(float x, float g) const { return x < lo || x > hi ? 0.0f : g; }
};

struct Add { __device__ float operator()(float a, float b) const { return a + b; } };
struct Sub { __device__ float operator()(float a, float b) const { return a - b; } };
struct Mul { __device__ float operator()(float a, float b) const { return a * b; } };
struct Div { __device__ float operator()(float a, float b) const { return a / b; } };
struct Maximum { __device__ float operator()(float a, float b) const { return a >= b ? a : b; } };
struct Minimum { __device__ float operator()(float a, float b) const { return a <= b ? a : b; } };

// Comparisons take any dtype and give a u8 mask.
struct Equal { template <class T> __device__ uint8_t operator()(T a, T b) const { return a == b ? 1 : 0; } };
struct Less { template <class T> __device__ uint8_t operator()(T a, T b) const { return a < b ? 1 : 0; } };
struct LessEqual { template <class T> __device__ uint8_t operator()(T a, T b) const { return a <= b ? 1 : 0; } };
struct Greater { template <class T> __device__ uint8_t operator()(T a, T b) const { return a > b ? 1 : 0; } };
struct GreaterEqual {
  template <class T> __device__ uint8_t operator()(T a, T b) const { return a >= b ? 1 : 0; }
};

template <class D>
struct Convert {
  template <class S> __device__ D operator()(S x) const { return static_cast<D>(x); }
};

// Applies an op to operands addressed by the strided walk; the output is contiguous.
template <class Op, class X, class Y>
struct Map1 {
  Op op;
  const X* x;
  Y* y;
  __device__ void operator()(int64_t i, const int64_t (&o)[1]) const { y[i] = op(x[o[0]]); }
};

template <class Op, class X, class Y>
struct Map2 {
  Op op;
  const X* a;
  const X* b;
  Y* y;
  __device__ void operator()(int64_t i, const int64_t (&o)[2]) const { y[i] = op(a[o[0]], b[o[1]]); }
};

template <class T>
struct Select {
  const uint8_t* c;
  const T* a;
  const T* b;
  T* y;
  __device__ void operator()(int64_t i, const int64_t (&o)[3]) const { y[i] = c[o[0]] ? a[o[1]] : b[o[2]]; }
};

// ---- launchers

// y = op(x) over a same-shape input.
template <class X, class Y, class Op>
void launch_map1(const Node& node, const Shape& shape, const X* x, Y* y, Op op) {
  const auto dense = contiguous_strides(shape);
  launch_strided(numel(shape), make_strided_index<1>(node, shape, {dense}), Map1<Op, X, Y>{op, x, y});
}

// y = op(a, b), a and b broadcast to the output shape.
template <class X, class Y, class Op>
void launch_map2(const Node& node, const Shape& out, const Shape& a_shape, const X* a, const Shape& b_shape,
                 const X* b, Y* y, Op op) {
  const auto ix =
      make_strided_index<2>(node, out, {broadcast_strides(a_shape, out), broadcast_strides(b_shape, out)});
  launch_strided(numel(out), ix, Map2<Op, X, Y>{op, a, b, y});
}

template <class T>
void launch_where(const Node& node, const Shape& out, const Shape& c_shape, const uint8_t* c, const Shape& a_shape,
                  const T* a, const Shape& b_shape, const T* b, T* y) {
  const auto ix = make_strided_index<3>(
      node, out, {broadcast_strides(c_shape, out), broadcast_strides(a_shape, out), broadcast_strides(b_shape, out)});
  launch_strided(numel(out), ix, Select<T>{c, a, b, y});
}

// ---- registration

template <class Op>
void add_unary(KernelTable& t, const std::string& name, Op op) {
  t.add(name, [op](const Node& node, std::span<const Tensor> in, Tensor& out) {
    dispatch_f32(out.dtype(), node,
                 [&](float) { launch_map1(node, out.shape(), in[0].data<float>(), out.data<float>(), op); });
  });
}

template <class Op>
void add_binary(KernelTable& t, const std::string& name, Op op) {
  t.add(name, [op](const Node& node, std::span<const Tensor> in, Tensor& out) {
    dispatch_f32(out.dtype(), node, [&](float) {
      launch_map2(node, out.shape(), in[0].shape(), in[0].data<float>(), in[1].shape(), in[1].data<float>(),
                  out.data<float>(), op);
    });
  });
}

template <class Op>
void add_comparison(KernelTable& t, const std::string& name, Op op) {
  t.add(name, [op](const Node& node, std::span<const Tensor> in, Tensor& out) {
    dispatch_any(in[0].dtype(), [&](auto tag) {
      using T = decltype(tag);
      launch_map2(node, out.shape(), in[0].shape(), in[0].data<T>(), in[1].shape(), in[1].data<T>(),
                  out.data<uint8_t>(), op);
    });
  });
}

// clamp and clamp_grad carry their range as attributes.
template <class Op>
Op range_of(const Node& node) {
  return Op{static_cast<float>(node.attrs.f("lo")), static_cast<float>(node.attrs.f("hi"))};
}

}  // namespace

void register_elementwise(KernelTable& t) {
  t.add("fill", [](const Node& node, std::span<const Tensor>, Tensor& out) {
    const double v = node.attrs.f("value");
    dispatch_any(out.dtype(), [&](auto tag) {
      using T = decltype(tag);
      launch_for_each(out.numel(), Fill<T>{static_cast<T>(v), out.data<T>()});
    });
  });
  t.add("iota", [](const Node&, std::span<const Tensor>, Tensor& out) {
    dispatch_any(out.dtype(), [&](auto tag) {
      using T = decltype(tag);
      launch_for_each(out.numel(), Iota<T>{out.data<T>()});
    });
  });

  add_unary(t, "neg", Neg{});
  add_unary(t, "abs", Abs{});
  add_unary(t, "sign", Sign{});
  add_unary(t, "exp", Exp{});
  add_unary(t, "log", Log{});
  add_unary(t, "sqrt", Sqrt{});
  add_unary(t, "rsqrt", Rsqrt{});
  add_unary(t, "sigmoid", Sigmoid{});
  add_unary(t, "tanh", Tanh{});
  add_unary(t, "stop_gradient", Identity{});
  t.add("clamp", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    dispatch_f32(out.dtype(), node, [&](float) {
      launch_map1(node, out.shape(), in[0].data<float>(), out.data<float>(), range_of<Clamp>(node));
    });
  });
  t.add("clamp_grad", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    dispatch_f32(out.dtype(), node, [&](float) {
      launch_map2(node, out.shape(), in[0].shape(), in[0].data<float>(), in[1].shape(), in[1].data<float>(),
                  out.data<float>(), range_of<ClampGrad>(node));
    });
  });

  add_binary(t, "add", Add{});
  add_binary(t, "sub", Sub{});
  add_binary(t, "mul", Mul{});
  add_binary(t, "div", Div{});
  add_binary(t, "maximum", Maximum{});
  add_binary(t, "minimum", Minimum{});

  add_comparison(t, "equal", Equal{});
  add_comparison(t, "less", Less{});
  add_comparison(t, "less_equal", LessEqual{});
  add_comparison(t, "greater", Greater{});
  add_comparison(t, "greater_equal", GreaterEqual{});

  t.add("where", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    dispatch_any(out.dtype(), [&](auto tag) {
      using T = decltype(tag);
      launch_where(node, out.shape(), in[0].shape(), in[0].data<uint8_t>(), in[1].shape(), in[1].data<T>(),
                   in[2].shape(), in[2].data<T>(), out.data<T>());
    });
  });

  t.add("cast", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    dispatch_any(in[0].dtype(), [&](auto from) {
      using S = decltype(from);
      dispatch_any(out.dtype(), [&](auto to) {
        using D = decltype(to);
        launch_map1(node, out.shape(), in[0].data<S>(), out.data<D>(), Convert<D>{});
      });
    });
  });
}

}  // namespace agilenn::cuda
