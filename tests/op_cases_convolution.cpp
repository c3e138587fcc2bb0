// Gradient-checker cases: convolutions and dense layers.
#include "tests/op_cases_util.h"

namespace agilenn::testing::cases {

void add_convolution_cases(Cases& cs) {
  using namespace ops;
  auto add = [&](OpCase c) { cs.push_back(std::move(c)); };

  // ---- convolution family
  add(conv_case("conv2d_valid", {2, 5, 7, 3}, {3, 3, 3, 4}, {1, 1}, {1, 1}, 1, Padding::valid));
  add(conv_case("conv2d_stride2_same", {2, 7, 6, 3}, {3, 3, 3, 5}, {2, 2}, {1, 1}, 1, Padding::same));
  add(conv_case("conv2d_dilation2_same", {1, 7, 7, 2}, {3, 3, 2, 3}, {1, 1}, {2, 2}, 1, Padding::same));
  add(conv_case("conv2d_groups2_same", {2, 5, 5, 4}, {3, 3, 2, 6}, {1, 1}, {1, 1}, 2, Padding::same));
  add(conv_case("conv2d_stride_hw_kernel_2x3", {1, 6, 7, 2}, {2, 3, 2, 3}, {2, 1}, {1, 2}, 1, Padding::same));
  add(conv_case("depthwise_stride3_same", {2, 7, 8, 3}, {3, 3, 1, 3}, {3, 3}, {1, 1}, 3, Padding::same));
  add(conv_case("depthwise_multiplier2_stride2", {1, 7, 6, 3}, {3, 3, 1, 6}, {2, 2}, {1, 1}, 3, Padding::valid));
  add(conv_case("depthwise_dilation2_same", {1, 7, 7, 4}, {3, 3, 1, 4}, {1, 1}, {2, 2}, 4, Padding::same));
  // PyTorch's convention (imported weights): (k − 1)·d/2 on each side, where "same" would
  // put the odd pixel after.
  add(conv_case("conv2d_stride2_symmetric", {2, 8, 6, 3}, {3, 3, 3, 5}, {2, 2}, {1, 1}, 1, Padding::symmetric));
  add(conv_case("depthwise_stride2_symmetric", {1, 8, 8, 4}, {3, 3, 1, 4}, {2, 2}, {1, 1}, 4, Padding::symmetric));
  add(conv_case("pointwise_stride2_same", {1, 5, 6, 3}, {1, 1, 3, 4}, {2, 2}, {1, 1}, 1, Padding::same));
  add(conv_case("pointwise", {2, 3, 5, 4}, {1, 1, 4, 3}, {1, 1}, {1, 1}, 1, Padding::valid));
  {
    // The gradient ops as functions of their own inputs, so their vjps are checked too.
    const Attrs a = conv_attrs({2, 2}, {1, 1}, 1, {0, 1, 1, 1});
    add({"conv2d_backward_input", {in({2, 3, 3, 4}), in({3, 3, 3, 4})},
         [a](Graph&, V v) { return conv2d_backward_input(v[0], v[1], a, {2, 6, 5, 3}); }, nullptr,
         {"conv2d_backward_input", "conv2d", "conv2d_backward_filter"}});
    add({"conv2d_backward_filter", {in({2, 6, 5, 3}), in({2, 3, 3, 4})},
         [a](Graph&, V v) { return conv2d_backward_filter(v[0], v[1], a, {3, 3, 3, 4}); }, nullptr,
         {"conv2d_backward_filter", "conv2d", "conv2d_backward_input"}});
    const Attrs dw = conv_attrs({1, 1}, {1, 1}, 3, {1, 1, 1, 1});
    add({"depthwise_backward_input", {in({1, 4, 5, 3}), in({3, 3, 1, 3})},
         [dw](Graph&, V v) { return conv2d_backward_input(v[0], v[1], dw, {1, 4, 5, 3}); }, nullptr,
         {"conv2d_backward_input"}});
    add({"depthwise_backward_filter", {in({1, 4, 5, 3}), in({1, 4, 5, 3})},
         [dw](Graph&, V v) { return conv2d_backward_filter(v[0], v[1], dw, {3, 3, 1, 3}); }, nullptr,
         {"conv2d_backward_filter"}});
  }

  // ---- dense
  for (int t = 0; t < 4; ++t) {
    const bool ta = t & 1, tb = t & 2;
    add({"matmul_t" + std::to_string(ta) + std::to_string(tb),
         {in(ta ? Shape{4, 3} : Shape{3, 4}), in(tb ? Shape{5, 4} : Shape{4, 5})},
         [ta, tb](Graph&, V v) { return matmul(v[0], v[1], ta, tb); },
         [ta, tb](T x) { return matmul_ref(x[0], x[1], ta, tb); }, {"matmul"}});
  }
  add({"dense", {in({3, 4}), in({4, 5}), in({5})}, [](Graph&, V v) { return dense(v[0], v[1], v[2]); },
       [](T x) {
         Tensor y = matmul_ref(x[0], x[1], false, false);
         for (int64_t i = 0; i < y.numel(); ++i) y.set_item(i, y.item(i) + x[2].item(i % 5));
         return y;
       },
       {"matmul", "add"}});
}

}  // namespace agilenn::testing::cases
