// Gradient-checker cases: reductions.
#include "tests/op_cases_util.h"

namespace agilenn::testing::cases {

void add_reductions_cases(Cases& cs) {
  using namespace ops;
  auto add = [&](OpCase c) { cs.push_back(std::move(c)); };

  // ---- reductions
  add({"sum_axis1", {in({3, 4, 5})}, [](Graph&, V v) { return sum(v[0], {1}); },
       [](T x) { return reduce_ref(x[0], {1}, false, 0, std::plus<double>()); }, {"sum", "broadcast_to", "reshape"}});
  add({"sum_axes02_keepdims", {in({3, 4, 5})}, [](Graph&, V v) { return sum(v[0], {0, 2}, true); },
       [](T x) { return reduce_ref(x[0], {0, 2}, true, 0, std::plus<double>()); }, {"sum"}});
  // Adjacent reduced axes, then a kept one, then a reduced one (the kernel merges 0 and 1).
  add({"sum_axes013", {in({2, 3, 4, 5})}, [](Graph&, V v) { return sum(v[0], {0, 1, 3}); },
       [](T x) { return reduce_ref(x[0], {0, 1, 3}, false, 0, std::plus<double>()); }, {"sum"}});
  add({"sum_all", {in({3, 5})}, [](Graph&, V v) { return sum(v[0]); },
       [](T x) { return reduce_ref(x[0], {}, false, 0, std::plus<double>()); }, {"sum"}});
  add({"mean_axes12", {in({2, 3, 5, 4})}, [](Graph&, V v) { return mean(v[0], {1, 2}); },
       [](T x) {
         Tensor s = reduce_ref(x[0], {1, 2}, false, 0, std::plus<double>());
         for (int64_t i = 0; i < s.numel(); ++i) s.set_item(i, s.item(i) / 15.0);
         return s;
       },
       {"sum", "mul"}});
  add({"max_axis1", {in({3, 5, 2})}, [](Graph&, V v) { return max(v[0], {1}); },
       [](T x) { return reduce_ref(x[0], {1}, false, -INFINITY, [](double a, double b) { return std::max(a, b); }); },
       {"max", "equal"}});
  add({"max_leading_axes_keepdims", {in({4, 3, 5})}, [](Graph&, V v) { return max(v[0], {0, 1}, true); },
       [](T x) { return reduce_ref(x[0], {0, 1}, true, -INFINITY, [](double a, double b) { return std::max(a, b); }); },
       {"max"}});
  add({"sum_leading_axes", {in({5, 2, 3})}, [](Graph&, V v) { return sum(v[0], {0}); },
       [](T x) { return reduce_ref(x[0], {0}, false, 0, std::plus<double>()); }, {"sum"}});
  add({"min_axes02", {in({3, 4, 5})}, [](Graph&, V v) { return min(v[0], {0, 2}); },
       [](T x) { return reduce_ref(x[0], {0, 2}, false, INFINITY, [](double a, double b) { return std::min(a, b); }); },
       {"min"}});
  {
    // The quantizer's pattern: the table entry nearest each value, c[argmin_j |x - c_j|].
    OpCase c;
    c.name = "argmin_gather";
    c.inputs = {in({4, 3}), in({5})};
    c.build = [](Graph&, V v) {
      Value d = abs(reshape(v[0], {4, 3, 1}) - v[1]);
      return gather(v[1], argmin(d, -1), 0) * v[0];
    };
    c.reference = [](T x) {
      Tensor y = Tensor::zeros({4, 3}, DType::f64);
      for (int64_t i = 0; i < 12; ++i) {
        int64_t best = 0;
        for (int64_t j = 1; j < 5; ++j)
          if (std::abs(x[0].item(i) - x[1].item(j)) < std::abs(x[0].item(i) - x[1].item(best))) best = j;
        y.set_item(i, x[1].item(best) * x[0].item(i));
      }
      return y;
    };
    c.covers = {"argmin", "gather", "gather_backward"};
    add(c);
  }
}

}  // namespace agilenn::testing::cases
