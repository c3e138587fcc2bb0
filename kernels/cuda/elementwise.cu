// fill, iota, unary math, clamp, binary arithmetic, comparisons, where, cast,
// stop_gradient, fused_elementwise, float32, with the CPU backend's per-element math
// (kernels/shared/elementwise.h). Every op but fill and iota is one strided walk (strided.cuh) applying a
// small functor, so broadcasting is handled once, by the operands' strides: a same-shape
// operand collapses to one contiguous axis and costs no index arithmetic.
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/fused_program.cuh"
#include "kernels/cuda/strided.cuh"
#include "kernels/shared/elementwise.h"

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

// A fused_elementwise node: its program's value at every element.
struct FusedMap {
  FusedProgramArgs program;
  float* y;
  __device__ void operator()(int64_t i) const { y[i] = program.at(i); }
};

// ---- launchers

void launch_fused(const Node& node, std::span<const Tensor> in, Tensor& out) {
  launch_for_each(out.numel(), FusedMap{fused_program_args(node, in, out.shape()), out.data<float>()});
}

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
template <template <class> class Op>
Op<float> range_of(const Node& node) {
  return Op<float>{static_cast<float>(node.attrs.f("lo")), static_cast<float>(node.attrs.f("hi"))};
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

  t.add("fused_elementwise", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    dispatch_f32(out.dtype(), node, [&](float) { launch_fused(node, in, out); });
  });
  add_unary(t, "neg", kernels::Neg{});
  add_unary(t, "abs", kernels::Abs{});
  add_unary(t, "sign", kernels::Sign{});
  add_unary(t, "exp", kernels::Exp{});
  add_unary(t, "log", kernels::Log{});
  add_unary(t, "sqrt", kernels::Sqrt{});
  add_unary(t, "rsqrt", kernels::Rsqrt{});
  add_unary(t, "sigmoid", kernels::Sigmoid{});
  add_unary(t, "tanh", kernels::Tanh{});
  add_unary(t, "stop_gradient", kernels::Identity{});
  t.add("clamp", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    dispatch_f32(out.dtype(), node, [&](float) {
      launch_map1(node, out.shape(), in[0].data<float>(), out.data<float>(), range_of<kernels::Clamp>(node));
    });
  });
  t.add("clamp_grad", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    dispatch_f32(out.dtype(), node, [&](float) {
      launch_map2(node, out.shape(), in[0].shape(), in[0].data<float>(), in[1].shape(), in[1].data<float>(),
                  out.data<float>(), range_of<kernels::ClampGrad>(node));
    });
  });

  add_binary(t, "add", kernels::Add{});
  add_binary(t, "sub", kernels::Sub{});
  add_binary(t, "mul", kernels::Mul{});
  add_binary(t, "div", kernels::Div{});
  add_binary(t, "maximum", kernels::Maximum{});
  add_binary(t, "minimum", kernels::Minimum{});

  add_comparison(t, "equal", kernels::Equal{});
  add_comparison(t, "less", kernels::Less{});
  add_comparison(t, "less_equal", kernels::LessEqual{});
  add_comparison(t, "greater", kernels::Greater{});
  add_comparison(t, "greater_equal", kernels::GreaterEqual{});

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
