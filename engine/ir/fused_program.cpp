#include "engine/ir/fused_program.h"

#include <bit>

#include "engine/core/error.h"

namespace agilenn {
namespace {

using kernels::FusedOp;

struct Named {
  const char* name;
  FusedOp op;
  int operands;
};
constexpr Named kFusable[] = {
    {"neg", FusedOp::neg, 1},         {"abs", FusedOp::abs, 1},         {"sign", FusedOp::sign, 1},
    {"exp", FusedOp::exp, 1},         {"log", FusedOp::log, 1},         {"sqrt", FusedOp::sqrt, 1},
    {"rsqrt", FusedOp::rsqrt, 1},     {"sigmoid", FusedOp::sigmoid, 1}, {"tanh", FusedOp::tanh, 1},
    {"stop_gradient", FusedOp::identity, 1}, {"broadcast_to", FusedOp::broadcast, 1},
    {"clamp", FusedOp::clamp, 1},     {"clamp_grad", FusedOp::clamp_grad, 2},
    {"add", FusedOp::add, 2},         {"sub", FusedOp::sub, 2},         {"mul", FusedOp::mul, 2},
    {"div", FusedOp::div, 2},         {"maximum", FusedOp::maximum, 2}, {"minimum", FusedOp::minimum, 2},
};

const Named& entry(FusedOp op) {
  for (const Named& n : kFusable)
    if (n.op == op) return n;
  AGILENN_THROW("fused_elementwise: no op with code " << static_cast<int>(op));
}

}  // namespace

std::optional<FusedOp> fused_op_of(const std::string& name) {
  for (const Named& n : kFusable)
    if (name == n.name) return n.op;
  return std::nullopt;
}

const char* fused_op_name(FusedOp op) { return entry(op).name; }
int fused_operands(FusedOp op) { return entry(op).operands; }

Attrs fused_attrs(const std::vector<FusedStep>& steps, const Shape& shape) {
  std::vector<int64_t> program, ranges;
  for (const FusedStep& s : steps) {
    const auto op = fused_op_of(s.op);
    AGILENN_CHECK(op, "fused_elementwise: op '" << s.op << "' cannot be fused");
    program.insert(program.end(), {static_cast<int64_t>(*op), s.a, s.b});
    ranges.insert(ranges.end(), {std::bit_cast<int64_t>(s.lo), std::bit_cast<int64_t>(s.hi)});
  }
  return Attrs{{"program", program}, {"ranges", ranges}, {"shape", std::vector<int64_t>(shape.begin(), shape.end())}};
}

Attrs fused_sum_attrs(const std::vector<FusedStep>& steps, const Shape& shape, std::vector<int64_t> axes,
                      bool keepdims, std::vector<int64_t> sums) {
  Attrs a = fused_attrs(steps, shape);
  a.set("axes", std::move(axes));
  a.set("keepdims", int64_t{keepdims});
  if (!sums.empty()) a.set("sums", std::move(sums));
  return a;
}

std::vector<int32_t> fused_sum_registers(const Attrs& attrs, size_t inputs) {
  const size_t registers = inputs + attrs.ints("program").size() / 3;
  if (!attrs.has("sums")) return {static_cast<int32_t>(registers - 1)};
  std::vector<int32_t> out;
  for (int64_t r : attrs.ints("sums")) {
    AGILENN_CHECK(r >= 0 && static_cast<size_t>(r) < registers,
                  "fused_sum: sums register " << r << " of " << registers);
    out.push_back(static_cast<int32_t>(r));
  }
  AGILENN_CHECK(!out.empty() && out.size() <= static_cast<size_t>(kernels::kFusedMaxSums),
                "fused_sum: " << out.size() << " sums, expected 1 to " << kernels::kFusedMaxSums);
  return out;
}

std::vector<kernels::FusedInstruction<double>> fused_instructions(const Attrs& attrs) {
  const auto& program = attrs.ints("program");
  const auto& ranges = attrs.ints("ranges");
  AGILENN_CHECK(program.size() % 3 == 0 && ranges.size() * 3 == program.size() * 2,
                "fused_elementwise: " << program.size() << " program entries and " << ranges.size() << " ranges");
  std::vector<kernels::FusedInstruction<double>> out;
  for (size_t j = 0; j < program.size() / 3; ++j) {
    const int64_t code = program[3 * j];
    AGILENN_CHECK(code >= 0 && code < kernels::kFusedOps, "fused_elementwise: instruction " << j << " has op code "
                                                                                            << code);
    out.push_back({static_cast<FusedOp>(code), static_cast<int32_t>(program[3 * j + 1]),
                   static_cast<int32_t>(program[3 * j + 2]), std::bit_cast<double>(ranges[2 * j]),
                   std::bit_cast<double>(ranges[2 * j + 1])});
  }
  return out;
}

std::vector<FusedStep> fused_steps(const Attrs& attrs) {
  std::vector<FusedStep> steps;
  for (const auto& in : fused_instructions(attrs)) steps.push_back({fused_op_name(in.op), in.a, in.b, in.lo, in.hi});
  return steps;
}

}  // namespace agilenn
