// Gradient-checker cases: dropout, normalisation, pooling and a small conv net.
#include "tests/op_cases_util.h"

namespace agilenn::testing::cases {

void add_layers_cases(Cases& cs) {
  using namespace ops;
  auto add = [&](OpCase c) { cs.push_back(std::move(c)); };

  // ---- dropout: a fixed mask per (seed, counter), so the op is linear in x
  add({"dropout", {in({4, 7}), ints({}, 3, 3)}, [](Graph&, V v) { return dropout(v[0], v[1], 0.3, 1234); }, nullptr,
       {"dropout_mask"}});

  // ---- normalisation, pooling
  add({"batch_norm_train", {in({4, 3, 3, 5}, -2.0, 2.0), in({5}, 0.5, 1.5), in({5}), in({5}), in({5}, 0.5, 1.5)},
       [](Graph&, V v) { return batch_norm_train(v[0], v[1], v[2], v[3], v[4], 0.99, 1e-3).y; },
       [](T x) {
         Tensor y = Tensor::zeros(x[0].shape(), DType::f64);
         for (int64_t c = 0; c < 5; ++c) {
           double m = 0, var = 0;
           for (int64_t i = c; i < x[0].numel(); i += 5) m += x[0].item(i);
           m /= 36;
           for (int64_t i = c; i < x[0].numel(); i += 5) var += (x[0].item(i) - m) * (x[0].item(i) - m);
           var /= 36;
           for (int64_t i = c; i < x[0].numel(); i += 5)
             y.set_item(i, (x[0].item(i) - m) / std::sqrt(var + 1e-3) * x[1].item(c) + x[2].item(c));
         }
         return y;
       },
       {"rsqrt", "sum", "sub", "mul", "add"}});
  add({"batch_norm_eval", {in({2, 3, 3, 5}), in({5}, 0.5, 1.5), in({5}), in({5}), in({5}, 0.5, 1.5)},
       [](Graph&, V v) { return batch_norm_eval(v[0], v[1], v[2], v[3], v[4], 1e-3); },
       [](T x) {
         return map_ref({x[0], x[1], x[2], x[3], x[4]}, [](const std::vector<double>& a) {
           return (a[0] - a[3]) / std::sqrt(a[4] + 1e-3) * a[1] + a[2];
         });
       },
       {"rsqrt"}});
  add({"global_avg_pool", {in({2, 3, 5, 4})}, [](Graph&, V v) { return global_avg_pool(v[0]); }, nullptr, {"sum"}});

  // ---- a small conv net: conv, BN, SiLU, depthwise, BN, SiLU, pool, dense, CE.
  // Its second-order check is grad(grad(loss)) against differences of the gradient.
  add({"small_convnet",
       {in({3, 6, 6, 2}), ints({3}, 0, 2), in({3, 3, 2, 4}, -0.5, 0.5), in({4}, 0.5, 1.5), in({4}),
        in({3, 3, 1, 4}, -0.5, 0.5), in({4}, 0.5, 1.5), in({4}), in({4, 3}, -0.5, 0.5)},
       [](Graph& g, V v) {
         auto bn = [&](const Value& x, const Value& gamma, const Value& beta) {
           Value zeros = fill(g, 0.0, {x.dim(-1)}, x.dtype()), ones = fill(g, 1.0, {x.dim(-1)}, x.dtype());
           return batch_norm_train(x, gamma, beta, zeros, ones, 0.99, 1e-3).y;
         };
         Conv2dOptions same;
         same.padding = Padding::same;
         Value h = silu(bn(conv2d(v[0], v[2], same), v[3], v[4]));
         Conv2dOptions dw;
         dw.padding = Padding::same;
         dw.stride = {2, 2};
         h = silu(bn(depthwise_conv2d(h, v[5], dw), v[6], v[7]));
         Value logits = matmul(global_avg_pool(h), v[8]);
         return mean(cross_entropy(logits, v[1]));
       },
       nullptr,
       {"conv2d", "sigmoid", "softmax_cross_entropy"}});
}

}  // namespace agilenn::testing::cases
