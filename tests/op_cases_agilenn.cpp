// Gradient-checker cases: the AgileNN step's fused ops.
#include "tests/op_cases_util.h"

namespace agilenn::testing::cases {

void add_agilenn_cases(Cases& cs) {
  using namespace ops;
  auto add = [&](OpCase c) { cs.push_back(std::move(c)); };

  // ---- fused ops of the AgileNN step (the quantizer's straight-through forward is not
  // differentiable in the finite-difference sense; its soft path is, and test_agilenn
  // checks the fused op against its decomposition)
  add({"attribution_stats", {in({2, 3, 3, 5}), in({2, 3, 3, 5})},
       [](Graph&, V v) { return attribution_stats(v[0], v[1], 2); },
       [](T x) {
         Tensor y = Tensor::zeros({2, 3}, DType::f64);
         for (int64_t b = 0; b < 2; ++b) {
           double local = 0, total = 0, worst = -INFINITY, weakest = INFINITY;
           for (int64_t i = 0; i < 45; ++i) {
             const double v = std::abs(x[0].item(b * 45 + i) * x[1].item(b * 45 + i));
             total += v;
             if (i % 5 < 2) local += v, weakest = std::min(weakest, v);
             else worst = std::max(worst, v);
           }
           y.set_item(b * 3, local);
           y.set_item(b * 3 + 1, total);
           y.set_item(b * 3 + 2, worst - weakest);
         }
         return y;
       },
       {"attribution_stats", "attribution_stats_backward", "abs", "max", "min", "concat"}});
  // Its fused vjp as a function of its own inputs (delta, a, g), for each wrt: the first
  // order here is the decomposition's second, the second order its third.
  for (int64_t wrt : {0, 1}) {
    add({"attribution_stats_backward_wrt" + std::to_string(wrt),
         {in({2, 3, 2, 5}), in({2, 3, 2, 5}), in({2, 3})},
         [wrt](Graph&, V v) { return attribution_stats_backward(v[0], v[1], v[2], 3, wrt); },
         [wrt](T x) { return attribution_stats_backward_ref(x[0], x[1], x[2], 3, wrt); },
         {"attribution_stats_backward", "abs", "max", "min"}});
  }
  add({"quantize_soft", {in({3, 4}, 0.0, 6.0), in({5}, 0.5, 5.5)},
       [](Graph&, V v) { return quantize_soft(v[0], v[1]); }, nullptr, {"softmax"}});
  // quantize's fused vjp (the soft path's) as a function of (x, centroids, g): smooth, so
  // finite differences check it and, through its decomposition, its own vjp.
  for (int64_t wrt : {0, 1}) {
    add({"quantize_backward_wrt" + std::to_string(wrt),
         {in({3, 4}, 0.0, 6.0), in({5}, 0.5, 5.5), in({3, 4})},
         [wrt](Graph&, V v) { return quantize_backward(v[0], v[1], v[2], wrt); },
         [wrt](T x) { return quantize_backward_ref(x[0], x[1], x[2], wrt); },
         {"quantize_backward", "softmax"}});
  }
}

}  // namespace agilenn::testing::cases
