// Gradient-checker cases: layout ops.
#include "tests/op_cases_util.h"

namespace agilenn::testing::cases {

void add_layout_cases(Cases& cs) {
  using namespace ops;
  auto add = [&](OpCase c) { cs.push_back(std::move(c)); };

  // ---- layout
  {
    OpCase c{"where_broadcast_condition", {in({3, 1}), in({3, 4}), in({4})},
             [](Graph&, V v) { return where(greater(v[0], scalar_like(v[0], 0.0)), v[1], v[2] * v[2]); },
             [](T x) {
               return map_ref({x[0], x[1], x[2]},
                              [](const std::vector<double>& a) { return a[0] > 0 ? a[1] : a[2] * a[2]; });
             },
             {"where", "greater"}};
    c.inputs[0].kinks = {0.0};
    add(c);
  }
  add({"concat_axis0", {in({2, 3}), in({1, 3})}, [](Graph&, V v) { return concat({v[0], v[1]}, 0); },
       [](T x) {
         Tensor y = Tensor::zeros({3, 3}, DType::f64);
         for (int64_t i = 0; i < 9; ++i) y.set_item(i, i < 6 ? x[0].item(i) : x[1].item(i - 6));
         return y;
       },
       {"concat"}});
  add({"broadcast_to", {in({3, 1})}, [](Graph&, V v) { return broadcast_to(v[0], {2, 3, 4}); },
       [](T x) { return map_ref({x[0], Tensor::zeros({2, 3, 4}, DType::f64)},
                                [](const std::vector<double>& a) { return a[0]; }); },
       {"broadcast_to"}});
  add({"reshape", {in({2, 3, 4})}, [](Graph&, V v) { return reshape(v[0], {6, 4}) * reshape(v[0], {6, 4}); },
       [](T x) {
         Tensor y = Tensor::zeros({6, 4}, DType::f64);
         for (int64_t i = 0; i < 24; ++i) y.set_item(i, x[0].item(i) * x[0].item(i));
         return y;
       },
       {"reshape"}});
  add({"transpose", {in({2, 3, 4})}, [](Graph&, V v) { return transpose(v[0], {2, 0, 1}); },
       [](T x) {
         Tensor y = Tensor::zeros({4, 2, 3}, DType::f64);
         for (int64_t i = 0; i < 24; ++i) {
           const auto id = unravel(i, {4, 2, 3});
           y.set_item(i, x[0].item(ravel({id[1], id[2], id[0]}, {2, 3, 4})));
         }
         return y;
       },
       {"transpose"}});
  add({"slice", {in({4, 5, 3})}, [](Graph&, V v) { return slice(v[0], {1, 0, 1}, {3, 4, 3}); },
       [](T x) {
         Tensor y = Tensor::zeros({2, 4, 2}, DType::f64);
         for (int64_t i = 0; i < y.numel(); ++i) {
           const auto id = unravel(i, y.shape());
           y.set_item(i, x[0].item(ravel({id[0] + 1, id[1], id[2] + 1}, {4, 5, 3})));
         }
         return y;
       },
       {"slice", "pad"}});
  add({"pad", {in({2, 3})}, [](Graph&, V v) { return pad(v[0], {1, 0}, {2, 3}); },
       [](T x) {
         Tensor y = Tensor::zeros({5, 6}, DType::f64);
         for (int64_t i = 0; i < 6; ++i) y.set_item((i / 3 + 1) * 6 + i % 3, x[0].item(i));
         return y;
       },
       {"pad", "slice"}});
  add({"concat_channels", {in({2, 3, 2}), in({2, 3, 1}), in({2, 3, 4})},
       [](Graph&, V v) { return concat({v[0], v[1], v[2]}, -1); },
       [](T x) {
         Tensor y = Tensor::zeros({2, 3, 7}, DType::f64);
         for (int64_t i = 0; i < y.numel(); ++i) {
           const auto id = unravel(i, y.shape());
           const int64_t c = id[2];
           const Tensor& src = c < 2 ? x[0] : c < 3 ? x[1] : x[2];
           const int64_t cc = c < 2 ? c : c < 3 ? c - 2 : c - 3;
           y.set_item(i, src.item(ravel({id[0], id[1], cc}, src.shape())));
         }
         return y;
       },
       {"concat", "slice"}});
}

}  // namespace agilenn::testing::cases
