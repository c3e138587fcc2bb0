// fill, unary math, clamp, binary arithmetic, comparisons, where, cast, stop_gradient;
// the per-element math is kernels/shared/elementwise.h.
#include <algorithm>
#include <type_traits>

#include "kernels/cpu/cpu_kernels.h"
#include "engine/ir/fused_program.h"
#include "kernels/shared/elementwise.h"
#include "kernels/shared/fused_elementwise.h"

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

// fused_elementwise: the program runs over blocks of elements, one instruction at a time
// over the whole block (a tight loop per instruction, where a per-element interpreter would
// branch per element and instruction). Same-shape inputs are read in place, periodic
// broadcast ones from a tile; others are gathered per block, a row of the last axis at a
// time.
// The period of a broadcast input that repeats along the flat output index (a trailing
// block of the output's axes, e.g. per-channel values of a channels-last tensor, or a
// scalar); 0 when it does not.
int64_t flat_period(const Shape& in, const Shape& out) {
  const size_t lead = out.size() - in.size();
  size_t first = in.size();  // in's first axis of extent above 1
  for (size_t d = 0; d < in.size() && first == in.size(); ++d)
    if (in[d] != 1) first = d;
  int64_t period = 1;
  for (size_t d = first; d < in.size(); ++d) {
    if (in[d] != out[lead + d]) return 0;
    period *= in[d];
  }
  return period;
}

template <class T>
void run_fused(const Node& node, std::span<const Tensor> in, Tensor& out) {
  constexpr int64_t kBlock = 256, kMaxTile = 4096;
  const auto program = fused_program<T>(node.attrs);
  const Shape& shape = out.shape();
  const size_t inputs = in.size(), registers = inputs + program.size(), rank = shape.size();
  std::vector<std::vector<int64_t>> strides(inputs);
  // A periodic input is read from a tile of it repeated past a block's length (made once
  // here), at the block's phase: no per-block gathering.
  std::vector<std::vector<T>> tiles(inputs);
  std::vector<int64_t> period(inputs, 0);
  for (size_t k = 0; k < inputs; ++k) {
    if (in[k].shape() == shape) continue;
    period[k] = flat_period(in[k].shape(), shape);
    if (period[k] > 0 && period[k] <= kMaxTile) {
      const T* x = in[k].data<T>();
      tiles[k].resize(static_cast<size_t>(kBlock + period[k]));
      for (size_t j = 0; j < tiles[k].size(); ++j) tiles[k][j] = x[static_cast<int64_t>(j) % period[k]];
      continue;
    }
    strides[k] = broadcast_strides(in[k].shape(), shape);
  }
  T* y = out.data<T>();
  const int64_t n = out.numel();
  parallel_for(n, n * static_cast<int64_t>(program.size()), [&](int64_t begin, int64_t end) {
    std::vector<T> scratch(registers * kBlock);
    std::vector<const T*> reg(registers);
    for (int64_t first = begin; first < end; first += kBlock) {
      const int64_t len = std::min(kBlock, end - first);
      for (size_t k = 0; k < inputs; ++k) {
        const T* x = in[k].data<T>();
        if (!tiles[k].empty()) {
          reg[k] = tiles[k].data() + first % period[k];
          continue;
        }
        if (strides[k].empty()) {
          reg[k] = x + first;
          continue;
        }
        // Row by row (the last axis), along which the input steps by one stride.
        const std::vector<int64_t>& st = strides[k];
        T* gathered = scratch.data() + k * kBlock;
        const int64_t width = rank == 0 ? 1 : shape[rank - 1], step = rank == 0 ? 0 : st[rank - 1];
        for (int64_t e = 0; e < len;) {
          int64_t off = 0, rem = first + e;
          for (size_t d = rank; d-- > 0;) {
            off += (rem % shape[d]) * st[d];
            rem /= shape[d];
          }
          const int64_t seg = std::min(len - e, width - (first + e) % width);
          if (step == 0) {
            std::fill_n(gathered + e, seg, x[off]);
          } else {
            for (int64_t j = 0; j < seg; ++j) gathered[e + j] = x[off + j * step];
          }
          e += seg;
        }
        reg[k] = gathered;
      }
      for (size_t j = 0; j < program.size(); ++j) {
        const auto& ins = program[j];
        T* dst = j + 1 == program.size() ? y + first : scratch.data() + (inputs + j) * kBlock;
        const T* a = reg[static_cast<size_t>(ins.a)];
        const T* b = ins.b >= 0 ? reg[static_cast<size_t>(ins.b)] : a;
        kernels::visit_fused(ins, [&](auto f, int) {
          if constexpr (requires { f(a[0], b[0]); }) {
            for (int64_t e = 0; e < len; ++e) dst[e] = f(a[e], b[e]);
          } else {
            for (int64_t e = 0; e < len; ++e) dst[e] = f(a[e]);
          }
        });
        reg[inputs + j] = dst;
      }
    }
  });
}

}  // namespace

void register_elementwise(KernelTable& t) {
  t.add("fused_elementwise", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    dispatch_float(out.dtype(), node, [&](auto tag) { run_fused<decltype(tag)>(node, in, out); });
  });
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
