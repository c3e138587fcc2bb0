// fill, unary math, clamp, binary arithmetic, comparisons, where, cast, stop_gradient,
// fused_elementwise and fused_sum; the per-element math is kernels/shared/elementwise.h.
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

// fused_elementwise and fused_sum: the program runs over blocks of elements, one
// instruction at a time over the whole block (a tight loop per instruction, where a
// per-element interpreter would branch per element and instruction). Same-shape inputs
// are read in place, periodic broadcast ones from a tile; others are gathered per block,
// a row of the last axis at a time.
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

// A fused program runs over blocks of at most this many consecutive elements. A fused sum
// runs whole rows at a time (when they fit), in longer blocks: a run's fixed cost (setting
// up the inputs, one loop per instruction, adding its rows in) would otherwise fall on a
// single 144-element row of a batch norm's statistics. 576 holds whole rows of the common
// channel counts (24, 64, 96, 144, 192); 576 measured 12-15% faster than 256 on such a sum,
// 1152 no faster; an elementwise program measured no faster at 512 than at 256.
constexpr int64_t kFusedBlock = 256, kFusedSumBlock = 576;

// Calls visit(functor) for instructions whose pass over a block costs mostly its loads and
// stores; returns false for the others (transcendentals, sign, abs).
template <class T, class Visit>
bool visit_cheap(const kernels::FusedInstruction<T>& in, Visit&& visit) {
  using kernels::FusedOp;
  switch (in.op) {
    case FusedOp::neg: visit(kernels::Neg{}); return true;
    case FusedOp::identity:
    case FusedOp::broadcast: visit(kernels::Identity{}); return true;
    case FusedOp::clamp: visit(kernels::Clamp<T>{in.lo, in.hi}); return true;
    case FusedOp::clamp_grad: visit(kernels::ClampGrad<T>{in.lo, in.hi}); return true;
    case FusedOp::add: visit(kernels::Add{}); return true;
    case FusedOp::sub: visit(kernels::Sub{}); return true;
    case FusedOp::mul: visit(kernels::Mul{}); return true;
    case FusedOp::div: visit(kernels::Div{}); return true;
    case FusedOp::maximum: visit(kernels::Maximum{}); return true;
    case FusedOp::minimum: visit(kernels::Minimum{}); return true;
    default: return false;
  }
}

// Two cheap instructions in a row, the second the only reader of the first's result t, run
// as one pass: t stays in a register instead of a store and a load. How the second reads t:
enum class Chain : uint8_t {
  none,      // not paired with the next instruction
  as_a,      // next(t, register b)
  as_b,      // next(register a, t)
  as_every,  // next(t) or next(t, t)
};

// Per instruction, how it chains into the next (instructions taken as a second are none).
// The `kept` registers (a fused sum's summed ones) are read after the program, so they are
// never the first of a pair.
template <class T>
std::vector<Chain> chains(const std::vector<kernels::FusedInstruction<T>>& program, size_t inputs,
                          const std::vector<int32_t>& kept) {
  std::vector<Chain> out(program.size(), Chain::none);
  auto cheap = [](const kernels::FusedInstruction<T>& in) { return visit_cheap(in, [](auto) {}); };
  for (size_t j = 0; j + 1 < program.size(); ++j) {
    const auto& next = program[j + 1];
    const auto t = static_cast<int32_t>(inputs + j);
    const bool as_a = next.a == t, as_b = next.b == t;
    if (!cheap(program[j]) || !cheap(next) || (!as_a && !as_b)) continue;
    bool read_later = std::find(kept.begin(), kept.end(), t) != kept.end();
    for (size_t k = j + 2; k < program.size(); ++k) read_later |= program[k].a == t || program[k].b == t;
    if (read_later) continue;
    out[j] = next.b < 0 || (as_a && as_b) ? Chain::as_every : as_a ? Chain::as_a : Chain::as_b;
    ++j;
  }
  return out;
}

// Instruction f on element e: f(a[e], b[e]), or f(a[e]) for one operand.
template <class T, class F>
[[gnu::always_inline]] inline T apply_at(F f, const T* a, const T* b, int64_t e) {
  if constexpr (requires { f(a[0], b[0]); }) {
    return f(a[e], b[e]);
  } else {
    return f(a[e]);
  }
}

// out[e] = g(f(a[e], b[e]), ...) as `chain` says, for e < len; f takes one operand or two.
template <class T, class F, class G>
[[gnu::always_inline]] inline void run_pair(F f, G g, Chain chain, const T* a, const T* b, const T* c, T* out,
                                            int64_t len) {
  auto first = [&](int64_t e) { return apply_at(f, a, b, e); };
  if constexpr (requires { g(a[0], b[0]); }) {
    if (chain == Chain::as_a) {
      for (int64_t e = 0; e < len; ++e) out[e] = g(first(e), c[e]);
    } else if (chain == Chain::as_b) {
      for (int64_t e = 0; e < len; ++e) out[e] = g(c[e], first(e));
    } else {
      for (int64_t e = 0; e < len; ++e) {
        const T t = first(e);
        out[e] = g(t, t);
      }
    }
  } else {
    for (int64_t e = 0; e < len; ++e) out[e] = g(first(e));
  }
}

// The instructions over len <= block elements: instruction j reads registers a and b
// of reg (the inputs, then the results so far), writes its result to values + j · block
// (the last to dst, if given) and becomes register inputs + j; a chained pair writes only
// the second's result. Most of a fused node's time beyond its memory traffic is spent here.
template <class T>
AGILENN_CPU_CLONES void run_program(const kernels::FusedInstruction<T>* program, const Chain* chain, size_t count,
                                    const T** reg, size_t inputs, T* values, int64_t block, int64_t len, T* dst) {
  for (size_t j = 0; j < count; ++j) {
    const auto& ins = program[j];
    const T* a = reg[static_cast<size_t>(ins.a)];
    const T* b = ins.b >= 0 ? reg[static_cast<size_t>(ins.b)] : a;
    if (chain[j] != Chain::none) {
      const auto& next = program[j + 1];
      T* out = j + 2 == count && dst ? dst : values + static_cast<int64_t>(j + 1) * block;
      const T* c = chain[j] == Chain::as_a   ? reg[static_cast<size_t>(next.b)]
                   : chain[j] == Chain::as_b ? reg[static_cast<size_t>(next.a)]
                                             : nullptr;
      visit_cheap(ins, [&](auto f) {
        visit_cheap(next, [&](auto g) { run_pair(f, g, chain[j], a, b, c, out, len); });
      });
      reg[inputs + j] = nullptr;  // never read: the pair's second was its only reader
      reg[inputs + j + 1] = out;
      ++j;
      continue;
    }
    T* out = j + 1 == count && dst ? dst : values + static_cast<int64_t>(j) * block;
    kernels::visit_fused(ins, [&](auto f, int) {
      for (int64_t e = 0; e < len; ++e) out[e] = apply_at(f, a, b, e);
    });
    reg[inputs + j] = out;
  }
}

// A fused program's evaluation over runs of at most `block` consecutive elements of its
// shape, shared by fused_elementwise (which writes every run) and fused_sum (which adds
// them up).
template <class T>
class FusedRuns {
 public:
  // One thread's registers.
  struct Scratch {
    std::vector<T> values;
    std::vector<const T*> reg;
  };

  // kept: registers read from the scratch (Scratch::reg) after each run, besides the last.
  FusedRuns(const Node& node, std::span<const Tensor> in, const Shape& shape, int64_t block,
            const std::vector<int32_t>& kept = {})
      : block_(block), program_(fused_program<T>(node.attrs)), chain_(chains(program_, in.size(), kept)), in_(in),
        shape_(shape), strides_(in.size()), tiles_(in.size()), period_(in.size(), 0) {
    constexpr int64_t kMaxTile = 4096;
    // A periodic input is read from a tile of it repeated past a block's length (made once
    // here), at the block's phase: no per-block gathering.
    for (size_t k = 0; k < in.size(); ++k) {
      if (in[k].shape() == shape) continue;
      period_[k] = flat_period(in[k].shape(), shape);
      if (period_[k] > 0 && period_[k] <= kMaxTile) {
        const T* x = in[k].data<T>();
        tiles_[k].resize(static_cast<size_t>(block_ + period_[k]));
        for (size_t j = 0; j < tiles_[k].size(); ++j) tiles_[k][j] = x[static_cast<int64_t>(j) % period_[k]];
        continue;
      }
      strides_[k] = broadcast_strides(in[k].shape(), shape);
    }
  }

  size_t instructions() const { return program_.size(); }

  Scratch scratch() const {
    const size_t registers = in_.size() + program_.size();
    return {std::vector<T>(registers * static_cast<size_t>(block_)), std::vector<const T*>(registers)};
  }

  // Elements [first, first + len) of the result, len <= block: written to dst, or to the
  // scratch where dst is null; returns where they are. A kept register's elements are then
  // at s.reg[register].
  const T* run(int64_t first, int64_t len, Scratch& s, T* dst) const {
    const size_t inputs = in_.size(), rank = shape_.size();
    for (size_t k = 0; k < inputs; ++k) {
      const T* x = in_[k].data<T>();
      if (!tiles_[k].empty()) {
        s.reg[k] = tiles_[k].data() + first % period_[k];
        continue;
      }
      if (strides_[k].empty()) {
        s.reg[k] = x + first;
        continue;
      }
      // Row by row (the last axis), along which the input steps by one stride.
      const std::vector<int64_t>& st = strides_[k];
      T* gathered = s.values.data() + static_cast<int64_t>(k) * block_;
      const int64_t width = rank == 0 ? 1 : shape_[rank - 1], step = rank == 0 ? 0 : st[rank - 1];
      for (int64_t e = 0; e < len;) {
        int64_t off = 0, rem = first + e;
        for (size_t d = rank; d-- > 0;) {
          off += (rem % shape_[d]) * st[d];
          rem /= shape_[d];
        }
        const int64_t seg = std::min(len - e, width - (first + e) % width);
        if (step == 0) {
          std::fill_n(gathered + e, seg, x[off]);
        } else {
          for (int64_t j = 0; j < seg; ++j) gathered[e + j] = x[off + j * step];
        }
        e += seg;
      }
      s.reg[k] = gathered;
    }
    run_program(program_.data(), chain_.data(), program_.size(), s.reg.data(), inputs,
                s.values.data() + static_cast<int64_t>(inputs) * block_, block_, len, dst);
    return s.reg.back();
  }

 private:
  int64_t block_;
  std::vector<kernels::FusedInstruction<T>> program_;
  std::vector<Chain> chain_;
  std::span<const Tensor> in_;
  const Shape& shape_;
  std::vector<std::vector<int64_t>> strides_;
  std::vector<std::vector<T>> tiles_;
  std::vector<int64_t> period_;
};

template <class T>
void run_fused(const Node& node, std::span<const Tensor> in, Tensor& out) {
  constexpr int64_t block = kFusedBlock;
  const FusedRuns<T> runs(node, in, out.shape(), block);
  T* y = out.data<T>();
  const int64_t n = out.numel();
  parallel_for(n, n * static_cast<int64_t>(runs.instructions()), [&](int64_t begin, int64_t end) {
    auto scratch = runs.scratch();
    for (int64_t first = begin; first < end; first += block)
      runs.run(first, std::min(block, end - first), scratch, y + first);
  });
}

// fused_sum adds the program's rows in the sum kernel's blocks and order (reduce_row_blocks,
// as reduce_rows in kernels/cpu/reductions.cpp): the fused node equals its chain and sum bit
// for bit. Several summed registers share each run and its reads of the inputs, each adding
// into its own row of the accumulators (and of the output).
template <class T>
void run_fused_sum(const Node& node, std::span<const Tensor> in, Tensor& out) {
  const Shape shape(node.attrs.ints("shape").begin(), node.attrs.ints("shape").end());
  const std::vector<int32_t> sums = fused_sum_registers(node.attrs, in.size());
  const auto outputs = static_cast<int64_t>(sums.size());
  const int64_t width = out.numel() / outputs;
  if (width == 0) return;
  constexpr int64_t block = kFusedSumBlock;
  const FusedRuns<T> runs(node, in, shape, block, sums);
  const int64_t rows = numel(shape) / width;
  const auto plus = [](T a, T b) { return a + b; };
  reduce_row_blocks(
      rows, outputs * width, rows * width * static_cast<int64_t>(runs.instructions()), T(0), plus,
      [&](T* acc, int64_t first, int64_t end) {
        auto scratch = runs.scratch();
        // Elements [at, at + len) of the program into each sum's accumulators from acc_at.
        const auto add_run = [&](int64_t at, int64_t len, int64_t run_rows, int64_t run_width, int64_t acc_at) {
          runs.run(at, len, scratch, nullptr);
          for (int64_t k = 0; k < outputs; ++k)
            combine_rows(scratch.reg[static_cast<size_t>(sums[static_cast<size_t>(k)])], 0, run_rows, run_width,
                         acc + k * width + acc_at, plus);
        };
        if (width <= block) {  // whole rows per run
          for (int64_t r = first; r < end;) {
            const int64_t count = std::min(block / width, end - r);
            add_run(r * width, count * width, count, width, 0);
            r += count;
          }
          return;
        }
        for (int64_t r = first; r < end; ++r)
          for (int64_t c = 0; c < width; c += block) {
            const int64_t len = std::min(block, width - c);
            add_run(r * width + c, len, 1, len, c);
          }
      },
      out.data<T>());
}

}  // namespace

void register_elementwise(KernelTable& t) {
  t.add("fused_elementwise", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    dispatch_float(out.dtype(), node, [&](auto tag) { run_fused<decltype(tag)>(node, in, out); });
  });
  t.add("fused_sum", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    dispatch_float(out.dtype(), node, [&](auto tag) { run_fused_sum<decltype(tag)>(node, in, out); });
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
