// Gradient-checker cases: softmax family and losses.
#include "tests/op_cases_util.h"

namespace agilenn::testing::cases {

void add_losses_cases(Cases& cs) {
  using namespace ops;
  auto add = [&](OpCase c) { cs.push_back(std::move(c)); };

  // ---- softmax family and losses
  add({"softmax", {in({3, 5}, -2.0, 2.0)}, [](Graph&, V v) { return softmax(v[0], -1); },
       [](T x) { return softmax_rows_ref(x[0], false); }, {"softmax"}});
  add({"softmax_middle_axis", {in({2, 4, 3}, -2.0, 2.0)}, [](Graph&, V v) { return softmax(v[0], 1); }, nullptr,
       {"softmax"}});
  add({"log_softmax_axis0", {in({4, 3}, -2.0, 2.0)}, [](Graph&, V v) { return log_softmax(v[0], 0); }, nullptr,
       {"log_softmax"}});
  add({"softmax_axis0", {in({4, 3}, -2.0, 2.0)}, [](Graph&, V v) { return softmax(v[0], 0); }, nullptr, {"softmax"}});
  add({"log_softmax", {in({3, 5}, -2.0, 2.0)}, [](Graph&, V v) { return log_softmax(v[0], 1); },
       [](T x) { return softmax_rows_ref(x[0], true); }, {"log_softmax", "exp"}});
  add({"cross_entropy", {in({4, 5}, -2.0, 2.0), ints({4}, 0, 4)},
       [](Graph&, V v) { return cross_entropy(v[0], v[1]); },
       [](T x) {
         Tensor ls = softmax_rows_ref(x[0], true);
         Tensor y = Tensor::zeros({4}, DType::f64);
         for (int64_t i = 0; i < 4; ++i) y.set_item(i, -ls.item(i * 5 + static_cast<int64_t>(x[1].item(i))));
         return y;
       },
       {"softmax_cross_entropy", "one_hot", "log_softmax", "exp"}});
  // Large logits (the max-subtracted forms stay finite) and a class count above a warp.
  add({"cross_entropy_wide_large_logits", {in({3, 37}, -40.0, 40.0), ints({3}, 0, 36)},
       [](Graph&, V v) { return cross_entropy(v[0], v[1]) * scalar_like(v[0], 0.25); },
       [](T x) {
         Tensor ls = softmax_rows_ref(x[0], true);
         Tensor y = Tensor::zeros({3}, DType::f64);
         for (int64_t i = 0; i < 3; ++i) y.set_item(i, -0.25 * ls.item(i * 37 + static_cast<int64_t>(x[1].item(i))));
         return y;
       },
       {"softmax_cross_entropy"}});
  add({"cross_entropy_reference", {in({4, 5}, -2.0, 2.0), ints({4}, 0, 4)},
       [](Graph&, V v) { return cross_entropy_reference(v[0], v[1]); }, nullptr, {"one_hot", "log_softmax"}});
  add({"gather_axis0", {in({4, 3}), ints({5}, 0, 3)}, [](Graph&, V v) { return gather(v[0], v[1], 0); },
       [](T x) {
         Tensor y = Tensor::zeros({5, 3}, DType::f64);
         for (int64_t i = 0; i < 15; ++i) y.set_item(i, x[0].item(static_cast<int64_t>(x[1].item(i / 3)) * 3 + i % 3));
         return y;
       },
       {"gather", "gather_backward"}});
  add({"gather_negative_axis_scalar_index", {in({3, 4}), ints({}, 0, 3)},
       [](Graph&, V v) { return gather(v[0], v[1], -1); }, nullptr, {"gather"}});
  add({"gather_axis1_matrix_index", {in({2, 4, 3}), ints({2, 2}, 0, 3)},
       [](Graph&, V v) { return gather(v[0], v[1], 1); }, nullptr, {"gather"}});
  add({"gather_backward", {in({3, 5}), ints({5}, 0, 3)},
       [](Graph&, V v) { return gather_backward(v[0], v[1], 1, 4); },
       [](T x) {
         Tensor y = Tensor::zeros({3, 4}, DType::f64);
         for (int64_t o = 0; o < 3; ++o)
           for (int64_t i = 0; i < 5; ++i) {
             const int64_t j = o * 4 + static_cast<int64_t>(x[1].item(i));
             y.set_item(j, y.item(j) + x[0].item(o * 5 + i));
           }
         return y;
       },
       {"gather_backward", "gather"}});
  add({"one_hot", {ints({3, 2}, 0, 4), in({3, 2, 5})},
       [](Graph&, V v) { return one_hot(v[0], 5, v[1].dtype()) * v[1]; },
       [](T x) {
         Tensor y = Tensor::zeros({3, 2, 5}, DType::f64);
         for (int64_t i = 0; i < 30; ++i)
           y.set_item(i, static_cast<int64_t>(x[0].item(i / 5)) == i % 5 ? x[1].item(i) : 0.0);
         return y;
       },
       {"one_hot"}});
}

}  // namespace agilenn::testing::cases
