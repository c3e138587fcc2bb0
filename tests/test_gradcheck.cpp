// Every op case of the table: forward against its naive reference, first and second
// order against finite differences in float64, and float32 against float64.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <set>

#include "engine/autodiff/grad.h"
#include "engine/ir/registry.h"
#include "tests/gradcheck.h"

namespace agilenn::testing {
namespace {

class OpCaseTest : public ::testing::TestWithParam<size_t> {
 protected:
  const OpCase& op_case() const { return op_cases()[GetParam()]; }
};

// Forward value (and, with `with_grads`, the gradients of sum(out * probe)) in `dtype`.
std::vector<Tensor> run_case(const OpCase& c, DType dtype, const std::vector<Tensor>& inputs, bool with_grads) {
  Graph g;
  std::vector<Value> leaves;
  Feeds feeds;
  for (size_t i = 0; i < inputs.size(); ++i) {
    leaves.push_back(ops::leaf(g, "x" + std::to_string(i), inputs[i].shape(), inputs[i].dtype()));
    feeds["x" + std::to_string(i)] = inputs[i];
  }
  Value out = c.build(g, leaves);
  std::vector<NodeId> outputs{out.id()};
  if (with_grads) {
    Value probe = ops::leaf(g, "probe", out.shape(), dtype);
    Tensor p = Tensor::zeros(out.shape(), DType::f64);
    for (int64_t i = 0; i < p.numel(); ++i) p.set_item(i, std::sin(0.7 * static_cast<double>(i) + 0.3));
    feeds["probe"] = p.to(dtype);
    std::vector<Value> xs;
    for (const Value& l : leaves)
      if (is_floating(l.dtype())) xs.push_back(l);
    for (const Value& gx : grad(ops::sum(out * probe), xs)) outputs.push_back(gx.id());
  }
  return evaluate(g, outputs, feeds, cpu_backend());
}

double max_abs(const Tensor& t) {
  double m = 0;
  for (double v : t.to_vector()) m = std::max(m, std::abs(v));
  return m;
}

class OpReferenceTest : public OpCaseTest {};

TEST_P(OpReferenceTest, ForwardMatchesReference) {
  const OpCase& c = op_case();
  const std::vector<Tensor> inputs = make_inputs(c, DType::f64, 11);
  const Tensor got = run_case(c, DType::f64, inputs, false)[0];
  const Tensor want = c.reference(inputs);
  ASSERT_EQ(got.shape(), want.shape());
  // Both sides compute in float64 with different summation orders: 1e-12 relative.
  EXPECT_LE(scaled_error(got, want, 1e-12, 1e-12 * (1 + max_abs(want))), 1.0) << c.name;
}

TEST_P(OpCaseTest, FirstAndSecondOrderMatchFiniteDifferences) {
  const OpCase& c = op_case();
  for (uint64_t seed : {1u, 2u}) {
    const GradcheckResult r = gradcheck(c, seed);
    EXPECT_LE(r.first_order_error, 1.0) << c.name << " seed " << seed << ": " << r.worst;
    EXPECT_LE(r.second_order_error, 1.0) << c.name << " seed " << seed << ": " << r.worst;
  }
}

TEST_P(OpCaseTest, Float32AgreesWithFloat64) {
  const OpCase& c = op_case();
  const std::vector<Tensor> in64 = make_inputs(c, DType::f64, 5);
  std::vector<Tensor> in32;
  for (const Tensor& t : in64) in32.push_back(is_floating(t.dtype()) ? t.to(DType::f32) : t);
  const std::vector<Tensor> r64 = run_case(c, DType::f64, in64, true);
  const std::vector<Tensor> r32 = run_case(c, DType::f32, in32, true);
  ASSERT_EQ(r64.size(), r32.size());
  for (size_t i = 0; i < r64.size(); ++i) {
    // float32 carries ~6e-8 relative error per rounding; a few hundred accumulated
    // operations stay within the case's rtol of the largest magnitude.
    const double scale = max_abs(r64[i]);
    EXPECT_LE(scaled_error(r32[i].to(DType::f64), r64[i], c.f32_rtol, c.f32_rtol * (1 + scale)), 1.0)
        << c.name << " output " << i << (i ? " (gradient)" : " (forward)");
  }
}

std::string case_name(const ::testing::TestParamInfo<size_t>& info) { return op_cases()[info.param].name; }

std::vector<size_t> cases_where(const std::function<bool(const OpCase&)>& keep) {
  std::vector<size_t> ix;
  for (size_t i = 0; i < op_cases().size(); ++i)
    if (keep(op_cases()[i])) ix.push_back(i);
  return ix;
}

INSTANTIATE_TEST_SUITE_P(Ops, OpCaseTest, ::testing::ValuesIn(cases_where([](const OpCase&) { return true; })),
                         case_name);
// Cases without a naive reference are checked through their derivatives alone.
INSTANTIATE_TEST_SUITE_P(Ops, OpReferenceTest,
                         ::testing::ValuesIn(cases_where([](const OpCase& c) { return bool(c.reference); })),
                         case_name);

// Every registry op is exercised by the first- and second-order checks of some case,
// bar four: the leaf; resize_bilinear, which has no vjp on purpose; and stop_gradient and
// the straight-through quantize, whose vjps differ from finite differences by design
// (test_higher_order and test_agilenn check them exactly).
TEST(OpCoverage, EveryOpHasFirstAndSecondOrderChecks) {
  std::set<std::string> covered;
  for (const OpCase& c : op_cases()) {
    Graph g;
    std::vector<Value> leaves;
    for (size_t i = 0; i < c.inputs.size(); ++i)
      leaves.push_back(ops::leaf(g, "x" + std::to_string(i), c.inputs[i].shape,
                                 c.inputs[i].is_int() ? DType::i32 : DType::f64));
    Value out = c.build(g, leaves);
    std::vector<Value> xs;
    for (const Value& l : leaves)
      if (is_floating(l.dtype())) xs.push_back(l);
    std::vector<Value> gs = grad(ops::sum(out), xs);
    Value inner;
    for (const Value& gx : gs) inner = inner.valid() ? inner + ops::sum(gx) : ops::sum(gx);
    grad(inner, xs);
    std::set<std::string> in_graph;
    for (const Node& n : g.nodes()) in_graph.insert(n.op_name());
    for (const std::string& op : c.covers)
      EXPECT_TRUE(in_graph.count(op)) << "case " << c.name << " claims to cover '" << op << "' but does not";
    covered.insert(in_graph.begin(), in_graph.end());
  }
  for (const std::string& op : OpRegistry::instance().names()) {
    if (op == "leaf" || op == "resize_bilinear" || op == "stop_gradient" || op == "quantize") continue;
    EXPECT_TRUE(covered.count(op)) << "op '" << op << "' has no gradient-check case";
  }
}

}  // namespace
}  // namespace agilenn::testing
