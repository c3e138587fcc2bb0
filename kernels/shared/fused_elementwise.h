// The per-element program of a fused_elementwise node (made by the fusion pass from a
// chain of elementwise ops), and of a fused_sum node (such a chain summed over leading
// axes): registers 0..inputs-1 hold the inputs' elements; instruction j applies one
// elementwise op to earlier registers and writes register inputs + j; the last register
// is the output. `broadcast` (a broadcast_to) is the identity on an element: its operand,
// an input of a smaller shape, is read broadcast like every input. The ops are the
// functors of elementwise.h, so a fused node computes bit for bit what its chain
// computed, on every backend.
#pragma once

#include <cstdint>

#include "kernels/shared/elementwise.h"

namespace agilenn::kernels {

enum class FusedOp : int32_t {
  neg, abs, sign, exp, log, sqrt, rsqrt, sigmoid, tanh, identity, broadcast, clamp,  // one operand
  clamp_grad, add, sub, mul, div, maximum, minimum,                        // two operands
};
constexpr int32_t kFusedOps = static_cast<int32_t>(FusedOp::minimum) + 1;
constexpr int kFusedMaxInputs = 8;
constexpr int kFusedMaxInstructions = 24;
// A fused_sum may sum several of its registers at once (sums of one pass over shared inputs).
constexpr int kFusedMaxSums = 4;

template <class T>
struct FusedInstruction {
  FusedOp op;
  int32_t a, b;  // operand registers (b unused by one-operand ops)
  T lo, hi;      // clamp and clamp_grad's range
};

// Calls visit(functor, operands) with the instruction's functor and operand count (1 or 2).
template <class T, class Visit>
AGILENN_HD void visit_fused(const FusedInstruction<T>& in, Visit&& visit) {
  switch (in.op) {
    case FusedOp::neg: visit(Neg{}, 1); return;
    case FusedOp::abs: visit(Abs{}, 1); return;
    case FusedOp::sign: visit(Sign{}, 1); return;
    case FusedOp::exp: visit(Exp{}, 1); return;
    case FusedOp::log: visit(Log{}, 1); return;
    case FusedOp::sqrt: visit(Sqrt{}, 1); return;
    case FusedOp::rsqrt: visit(Rsqrt{}, 1); return;
    case FusedOp::sigmoid: visit(Sigmoid{}, 1); return;
    case FusedOp::tanh: visit(Tanh{}, 1); return;
    case FusedOp::identity: visit(Identity{}, 1); return;
    case FusedOp::broadcast: visit(Identity{}, 1); return;
    case FusedOp::clamp: visit(Clamp<T>{in.lo, in.hi}, 1); return;
    case FusedOp::clamp_grad: visit(ClampGrad<T>{in.lo, in.hi}, 2); return;
    case FusedOp::add: visit(Add{}, 2); return;
    case FusedOp::sub: visit(Sub{}, 2); return;
    case FusedOp::mul: visit(Mul{}, 2); return;
    case FusedOp::div: visit(Div{}, 2); return;
    case FusedOp::maximum: visit(Maximum{}, 2); return;
    case FusedOp::minimum: visit(Minimum{}, 2); return;
  }
}

// One instruction on one element.
template <class T>
AGILENN_HD T apply_fused(const FusedInstruction<T>& in, T a, T b) {
  T y{};
  visit_fused(in, [&](auto f, int operands) {
    if constexpr (requires { f(a, b); }) {
      if (operands == 2) y = f(a, b);
    } else {
      y = f(a);
    }
  });
  return y;
}

}  // namespace agilenn::kernels
