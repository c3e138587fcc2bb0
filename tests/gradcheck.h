// Table-driven gradient checks: every op case is checked to first and second order
// against central finite differences in float64, and float32 against float64.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "engine/ir/ops.h"
#include "engine/runtime/executor.h"

namespace agilenn::testing {

// How to draw one input. Floating inputs take the case's dtype (float64 for the
// derivative checks); integer inputs are drawn in [lo, hi] and never differentiated.
struct InputSpec {
  Shape shape;
  double lo = -1.0, hi = 1.0;
  // Keep |value| at least this far from each point in `kinks`, so finite differences
  // never straddle a point where the derivative jumps.
  std::vector<double> kinks;
  double kink_margin = 0.05;
  DType int_dtype = DType::f64;  // DType::i32 marks an integer input
  bool is_int() const { return int_dtype == DType::i32; }
};

using CaseBuilder = std::function<Value(Graph&, const std::vector<Value>&)>;
// Naive reference of the forward value from float64 inputs; empty when the case has none.
using CaseReference = std::function<Tensor(const std::vector<Tensor>&)>;

struct OpCase {
  std::string name;
  std::vector<InputSpec> inputs;
  CaseBuilder build;
  CaseReference reference;
  // Ops the case must exercise (checked against the graph); the coverage test uses it.
  std::vector<std::string> covers;
  // Relative tolerance of the float32 forward against float64 (scaled by magnitude).
  double f32_rtol = 2e-5;
  // Extra vertical gaps between pairs of inputs (e.g. maximum(a,b) needs |a-b| large).
  std::function<void(std::vector<Tensor>&)> adjust;
};

const std::vector<OpCase>& op_cases();

// Random inputs for a case, deterministic in `seed`; floats in `dtype`.
std::vector<Tensor> make_inputs(const OpCase& c, DType dtype, uint64_t seed);

// Maximum of |a - b| / (atol + rtol * max(|a|, |b|)) over all elements; <= 1 passes.
double scaled_error(const Tensor& a, const Tensor& b, double rtol, double atol);

struct GradcheckResult {
  double first_order_error = 0;   // scaled error, <= 1 passes
  double second_order_error = 0;  // scaled error, <= 1 passes
  std::string worst;              // where the worst disagreement was
};

// Builds loss = sum(out * probe) and checks d loss / d x and the Hessian-vector product
// d/dx <d loss/dx, v> against central differences, for every floating input x.
GradcheckResult gradcheck(const OpCase& c, uint64_t seed);

}  // namespace agilenn::testing
