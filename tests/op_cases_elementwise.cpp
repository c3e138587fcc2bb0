// Gradient-checker cases: unary and binary elementwise ops (broadcasting).
#include "tests/op_cases_util.h"

namespace agilenn::testing::cases {

void add_elementwise_cases(Cases& cs) {
  using namespace ops;
  auto add = [&](OpCase c) { cs.push_back(std::move(c)); };

  // ---- unary elementwise
  add({"neg", {in({3, 5})}, [](Graph&, V v) { return neg(v[0]); }, unary_ref([](double x) { return -x; }), {"neg"}});
  add({"abs", {with_kinks({3, 5}, {0.0})}, [](Graph&, V v) { return abs(v[0]); },
       unary_ref([](double x) { return std::abs(x); }), {"abs", "sign"}});
  add({"exp", {in({3, 5})}, [](Graph&, V v) { return exp(v[0]); }, unary_ref([](double x) { return std::exp(x); }),
       {"exp"}});
  add({"log", {in({3, 5}, 0.2, 2.0)}, [](Graph&, V v) { return log(v[0]); },
       unary_ref([](double x) { return std::log(x); }), {"log"}});
  add({"sqrt", {in({3, 5}, 0.2, 2.0)}, [](Graph&, V v) { return sqrt(v[0]); },
       unary_ref([](double x) { return std::sqrt(x); }), {"sqrt"}});
  add({"rsqrt", {in({3, 5}, 0.2, 2.0)}, [](Graph&, V v) { return rsqrt(v[0]); },
       unary_ref([](double x) { return 1.0 / std::sqrt(x); }), {"rsqrt"}});
  add({"sigmoid", {in({3, 5}, -4.0, 4.0)}, [](Graph&, V v) { return sigmoid(v[0]); },
       unary_ref([](double x) { return 1.0 / (1.0 + std::exp(-x)); }), {"sigmoid"}});
  add({"tanh", {in({3, 5}, -2.0, 2.0)}, [](Graph&, V v) { return tanh(v[0]); },
       unary_ref([](double x) { return std::tanh(x); }), {"tanh"}});
  add({"clamp", {with_kinks({4, 5}, {-0.5, 0.5})}, [](Graph&, V v) { return clamp(v[0], -0.5, 0.5); },
       unary_ref([](double x) { return std::min(0.5, std::max(-0.5, x)); }), {"clamp", "clamp_grad"}});
  {
    OpCase c{"clamp_grad", {with_kinks({4, 5}, {-0.5, 0.5}), in({4, 5})},
             [](Graph&, V v) { return clamp_grad(v[0], v[1] * v[1], -0.5, 0.5); },
             binary_ref([](double x, double g) { return x < -0.5 || x > 0.5 ? 0.0 : g * g; }), {"clamp_grad"}};
    add(c);
  }
  add({"relu", {with_kinks({4, 5}, {0.0})}, [](Graph&, V v) { return relu(v[0]); },
       unary_ref([](double x) { return std::max(0.0, x); }), {"maximum"}});
  add({"relu6", {with_kinks({4, 5}, {0.0, 6.0}, -2.0, 8.0)}, [](Graph&, V v) { return relu6(v[0]); },
       unary_ref([](double x) { return std::min(6.0, std::max(0.0, x)); }), {"clamp"}});
  add({"silu", {in({3, 5}, -3.0, 3.0)}, [](Graph&, V v) { return silu(v[0]); },
       unary_ref([](double x) { return x / (1.0 + std::exp(-x)); }), {"sigmoid", "mul"}});
  add({"iota_weights", {in({3, 4})}, [](Graph& g, V v) { return v[0] * iota(g, 4, v[0].dtype()); },
       [](T x) {
         Tensor y = Tensor::zeros({3, 4}, DType::f64);
         for (int64_t i = 0; i < 12; ++i) y.set_item(i, x[0].item(i) * static_cast<double>(i % 4));
         return y;
       },
       {"iota"}});
  // In a world of one rank (tests/test_dist.cpp checks it between two).
  add({"all_reduce_sum", {in({3, 5})}, [](Graph&, V v) { return all_reduce_sum(v[0]); },
       unary_ref([](double x) { return x; }), {"all_reduce_sum"}});
  add({"sign_times_x", {with_kinks({3, 5}, {0.0})}, [](Graph&, V v) { return sign(v[0]) * v[0]; },
       unary_ref([](double x) { return std::abs(x); }), {"sign"}});

  // A fused chain with a broadcast per-column input and every kind of instruction the
  // fusion pass makes from a batch norm and its activation: ((x - c) * c, clamped) * x + c.
  add({"fused_elementwise", {with_kinks({4, 5}, {-0.5, 0.5}), in({5}, 0.5, 1.5)},
       [](Graph&, V v) {
         return fused_elementwise(v,
                                  {{"sub", 0, 1}, {"mul", 2, 1}, {"clamp", 3, -1, -0.5, 0.5}, {"mul", 4, 0},
                                   {"add", 5, 1}},
                                  {4, 5});
       },
       binary_ref([](double x, double c) { return std::min(0.5, std::max(-0.5, (x - c) * c)) * x + c; }),
       {"fused_elementwise"}});
  // A batch norm's backward pieces: a broadcast_to taken in as an instruction (its operand,
  // per column, read broadcast), and the chain summed over its leading axes as the
  // statistics' and the per-column operands' gradients are.
  add({"fused_elementwise_broadcast", {in({4, 5}), in({1, 5})},
       [](Graph&, V v) { return fused_elementwise(v, {{"broadcast_to", 1}, {"mul", 2, 0}, {"add", 3, 2}}, {4, 5}); },
       binary_ref([](double x, double c) { return c * x + c; }), {"fused_elementwise"}});
  add({"fused_sum_leading_axes", {with_kinks({3, 4, 5}, {-0.5, 0.5}), in({5}, 0.5, 1.5)},
       [](Graph&, V v) {
         return fused_sum(v, {{"sub", 0, 1}, {"mul", 2, 1}, {"clamp", 3, -1, -0.5, 0.5}, {"mul", 4, 0}},
                          {3, 4, 5}, {0, 1}, false);
       },
       [](T x) {
         const Tensor chain = map_ref({x[0], x[1]}, [](const std::vector<double>& a) {
           return std::min(0.5, std::max(-0.5, (a[0] - a[1]) * a[1])) * a[0];
         });
         return reduce_ref(chain, {0, 1}, false, 0, std::plus<double>());
       },
       {"fused_sum"}});
  // Several registers summed in one pass (an input, an intermediate and the last), as the
  // fusion pass merges a batch norm backward's sums of the same gradient: stacked [3, 5].
  add({"fused_sum_three_registers", {with_kinks({3, 4, 5}, {-0.5, 0.5}), in({5}, 0.5, 1.5)},
       [](Graph&, V v) {
         return fused_sum(v, {{"sub", 0, 1}, {"mul", 2, 1}, {"clamp", 3, -1, -0.5, 0.5}, {"mul", 4, 0}},
                          {3, 4, 5}, {0, 1}, false, {0, 2, 5});
       },
       [](T x) {
         const std::vector<Tensor> registers{
             x[0], map_ref({x[0], x[1]}, [](const std::vector<double>& a) { return a[0] - a[1]; }),
             map_ref({x[0], x[1]}, [](const std::vector<double>& a) {
               return std::min(0.5, std::max(-0.5, (a[0] - a[1]) * a[1])) * a[0];
             })};
         Tensor y = Tensor::zeros({3, 5}, DType::f64);
         for (int64_t k = 0; k < 3; ++k) {
           const Tensor s = reduce_ref(registers[static_cast<size_t>(k)], {0, 1}, false, 0, std::plus<double>());
           for (int64_t c = 0; c < 5; ++c) y.set_item(k * 5 + c, s.item(c));
         }
         return y;
       },
       {"fused_sum"}});
  add({"fused_sum_keepdims", {in({6, 3}), in({1, 3})},
       [](Graph&, V v) { return fused_sum(v, {{"broadcast_to", 1}, {"mul", 0, 2}, {"mul", 3, 0}}, {6, 3}, {0}, true); },
       [](T x) {
         const Tensor chain = map_ref({x[0], x[1]}, [](const std::vector<double>& a) { return a[0] * a[1] * a[0]; });
         return reduce_ref(chain, {0}, true, 0, std::plus<double>());
       },
       {"fused_sum"}});

  // ---- binary elementwise with broadcasting
  add({"add_broadcast", {in({3, 5}), in({5})}, [](Graph&, V v) { return v[0] + v[1]; },
       binary_ref([](double a, double b) { return a + b; }), {"add"}});
  add({"sub_broadcast", {in({2, 1, 3}), in({4, 1})}, [](Graph&, V v) { return v[0] - v[1]; },
       binary_ref([](double a, double b) { return a - b; }), {"sub"}});
  add({"mul_broadcast", {in({2, 3, 1}), in({1, 3, 4})}, [](Graph&, V v) { return v[0] * v[1]; },
       binary_ref([](double a, double b) { return a * b; }), {"mul"}});
  add({"div_broadcast", {in({3, 5}), in({3, 1}, 0.5, 2.0)}, [](Graph&, V v) { return v[0] / v[1]; },
       binary_ref([](double a, double b) { return a / b; }), {"div"}});
  {
    OpCase c{"maximum", {in({3, 5}), in({3, 5})}, [](Graph&, V v) { return maximum(v[0], v[1]); },
             binary_ref([](double a, double b) { return std::max(a, b); }), {"maximum", "greater_equal", "where"}};
    c.adjust = [](std::vector<Tensor>& xs) { separate(xs); };
    add(c);
    OpCase d{"minimum_broadcast", {in({3, 5}), in({5})}, [](Graph&, V v) { return minimum(v[0], v[1]); },
             binary_ref([](double a, double b) { return std::min(a, b); }), {"minimum", "less_equal", "where"}};
    d.adjust = [](std::vector<Tensor>& xs) { separate(xs); };
    add(d);
  }
  // Comparisons route the gradient through `where`; their own derivative is zero.
  const std::pair<const char*, std::function<double(double, double)>> comparisons[] = {
      {"equal", [](double a, double b) { return double(a == b); }},
      {"less", [](double a, double b) { return double(a < b); }},
      {"less_equal", [](double a, double b) { return double(a <= b); }},
      {"greater", [](double a, double b) { return double(a > b); }},
      {"greater_equal", [](double a, double b) { return double(a >= b); }},
  };
  for (const auto& [op, f] : comparisons) {
    const std::string name = op;
    OpCase c;
    c.name = "where_" + name;
    c.inputs = {in({4, 3}), in({4, 3})};
    c.build = [name](Graph& g, V v) {
      // Compare b with itself for `equal` on half the elements, so both branches run.
      Value rhs = name == "equal" ? where(greater(v[0], scalar_like(v[0], 0.0)), v[0], v[1]) : v[1];
      Value mask = Value(&g, g.add(name, {v[0].id(), rhs.id()}));
      return where(mask, v[0] * v[1], v[0] + v[1]) + cast(mask, v[0].dtype()) * v[0];
    };
    c.reference = [name, f](T x) {
      return map_ref({x[0], x[1]}, [&](const std::vector<double>& a) {
        const double rhs = name == "equal" ? (a[0] > 0 ? a[0] : a[1]) : a[1];
        const double m = f(a[0], rhs);
        return (m != 0 ? a[0] * a[1] : a[0] + a[1]) + m * a[0];
      });
    };
    c.covers = {name, "where", "cast"};
    c.adjust = [](std::vector<Tensor>& xs) { separate(xs); };
    add(c);
  }
}

}  // namespace agilenn::testing::cases
