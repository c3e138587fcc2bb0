// The program a fused_elementwise or fused_sum node carries
// (kernels/shared/fused_elementwise.h): how the fusion pass writes it into attributes, how
// kernels read it back, and which ops it may hold.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "engine/ir/graph.h"
#include "kernels/shared/fused_elementwise.h"

namespace agilenn {

// One instruction: `op` (a registry op name) on registers a and b (b = -1 for one
// operand); clamp and clamp_grad's range.
struct FusedStep {
  std::string op;
  int32_t a = 0, b = -1;
  double lo = 0, hi = 0;
};

// The fusable op of a registry name, or none.
std::optional<kernels::FusedOp> fused_op_of(const std::string& name);
const char* fused_op_name(kernels::FusedOp op);
int fused_operands(kernels::FusedOp op);

// Attributes of a fused_elementwise node: "program" (op, a, b per instruction), "ranges"
// (lo, hi per instruction, as the bits of doubles) and the output "shape".
Attrs fused_attrs(const std::vector<FusedStep>& steps, const Shape& shape);
// A fused_sum node's: those and the summed leading "axes", "keepdims" as sum's; with
// `sums` (registers), "sums": those registers' sums stacked along a new first axis, in
// place of the last register's sum.
Attrs fused_sum_attrs(const std::vector<FusedStep>& steps, const Shape& shape, std::vector<int64_t> axes,
                      bool keepdims, std::vector<int64_t> sums = {});
// The registers a fused_sum node sums: its "sums", or its last register.
std::vector<int32_t> fused_sum_registers(const Attrs& attrs, size_t inputs);
// The instructions as read from the attributes (op codes checked), in double precision.
std::vector<kernels::FusedInstruction<double>> fused_instructions(const Attrs& attrs);
std::vector<FusedStep> fused_steps(const Attrs& attrs);

// The program of a node in the kernels' precision T.
template <class T>
std::vector<kernels::FusedInstruction<T>> fused_program(const Attrs& attrs) {
  std::vector<kernels::FusedInstruction<T>> out;
  for (const auto& in : fused_instructions(attrs))
    out.push_back({in.op, in.a, in.b, static_cast<T>(in.lo), static_cast<T>(in.hi)});
  return out;
}

}  // namespace agilenn
