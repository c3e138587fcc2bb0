// Data parallel on CPU ranks (label dist): this binary runs under `mpirun -np 2`, every
// rank the same tests in the same order (they meet in collectives). It checks the
// all_reduce_sum op and its vjp, SyncBN's gradients against finite differences taken
// across the ranks (first and second order, float64), and the invariant of DESIGN.md §5:
// two ranks with half the batch each take the steps one rank takes with the whole batch.
#include <gtest/gtest.h>

#include <cmath>
#include <iostream>

#include "engine/autodiff/grad.h"
#include "engine/dist/communicator.h"
#include "engine/ir/ops.h"
#include "engine/runtime/executor.h"
#include "engine/train/trainer.h"
#include "tests/test_util.h"

namespace agilenn {
namespace {

dist::Communicator& world() { return dist::world(); }

// The sum over the ranks of a host scalar.
double summed(double v) {
  world().all_reduce_sum(&v, 1, DType::f64);
  return v;
}

TEST(AllReduceSum, SumsOverTheRanksAndItsVjpSumsTheGradients) {
  ASSERT_EQ(world().size(), 2) << "run under mpirun -np 2";
  const int r = world().rank();
  Graph g;
  Value x = ops::leaf(g, "x", {3}, DType::f64);
  Value w = ops::leaf(g, "w", {3}, DType::f64);
  Value y = ops::all_reduce_sum(x);
  Value gx = grad(ops::sum(y * w), {x})[0];
  Tensor xv = Tensor::zeros({3}, DType::f64), wv = Tensor::zeros({3}, DType::f64);
  for (int64_t i = 0; i < 3; ++i) {
    xv.set_item(i, (r + 1) * 10.0 + static_cast<double>(i));  // rank 0: 10, 11, 12; rank 1: 20, 21, 22
    wv.set_item(i, (r + 1) * 0.5 * static_cast<double>(i + 1));
  }
  const auto out = evaluate(g, {y.id(), gx.id()}, {{"x", xv}, {"w", wv}}, cpu_backend());
  for (int64_t i = 0; i < 3; ++i) {
    EXPECT_EQ(out[0].item(i), 30.0 + 2.0 * static_cast<double>(i));
    // d/dx_r of Σ_r' <y, w_r'> = Σ_r' w_r' (exact in binary: multiples of 0.5).
    EXPECT_EQ(out[1].item(i), 1.5 * static_cast<double>(i + 1));
  }
}

// SyncBN on each rank's x [4, 3]: local loss L_r = <y_r, p_r>, global L = Σ_r L_r. Rank r's
// gradients from grad() (the all-reduce's vjp bringing in the other ranks' terms) must be
// ∂L/∂x_r and, for the replicated γ, the rank's part of ∂L/∂γ (their sum is checked);
// second order: ∂/∂x_r of Σ_r' <∂L/∂x_r', v_r'>. Both against central differences in which
// one rank moves one element and every rank evaluates.
TEST(SyncBatchNorm, GradientsMatchFiniteDifferencesAcrossRanksToSecondOrder) {
  const int r = world().rank();
  Graph g;
  Value x = ops::leaf(g, "x", {4, 3}, DType::f64);
  Value gamma = ops::leaf(g, "gamma", {3}, DType::f64);
  Value beta = ops::leaf(g, "beta", {3}, DType::f64);
  Value mean = ops::leaf(g, "mean", {3}, DType::f64);
  Value var = ops::leaf(g, "var", {3}, DType::f64);
  Value p = ops::leaf(g, "p", {4, 3}, DType::f64);
  Value v = ops::leaf(g, "v", {4, 3}, DType::f64);
  const ops::BatchNormResult bn = ops::batch_norm_train(x, gamma, beta, mean, var, 0.99, 1e-3, 2);
  Value loss = ops::sum(bn.y * p);
  const std::vector<Value> first = grad(loss, {x, gamma});
  Value hvp = grad(ops::sum(first[0] * v), {x})[0];

  Feeds feeds{{"x", testing::random_tensor({4, 3}, DType::f64, 11 + r, -2, 2)},
              {"gamma", testing::random_tensor({3}, DType::f64, 5, 0.5, 1.5)},
              {"beta", testing::random_tensor({3}, DType::f64, 6)},
              {"mean", Tensor::zeros({3}, DType::f64)},
              {"var", Tensor::zeros({3}, DType::f64)},
              {"p", testing::random_tensor({4, 3}, DType::f64, 21 + r)},
              {"v", testing::random_tensor({4, 3}, DType::f64, 31 + r)}};
  Executor ex(g, compile(g, {loss.id(), first[0].id(), first[1].id(), hvp.id()}), cpu_backend());
  const std::vector<Tensor> at = ex.run(feeds);
  // The global objectives: L, and Σ_r <∂L/∂x_r, v_r>.
  auto objectives = [&](const Feeds& f) {
    const std::vector<Tensor> o = ex.run(f);
    double dot = 0;
    for (int64_t i = 0; i < o[1].numel(); ++i) dot += o[1].item(i) * f.at("v").item(i);
    return std::pair{summed(o[0].item(0)), summed(dot)};
  };
  constexpr double h = 1e-5, rtol = 1e-6, atol = 1e-8;
  double worst_first = 0, worst_second = 0;
  for (int owner = 0; owner < 2; ++owner) {
    for (int64_t i = 0; i < 12; ++i) {
      auto moved = [&](double by) {
        Feeds f = feeds;
        f["x"] = f["x"].clone();
        if (r == owner) f["x"].set_item(i, f["x"].item(i) + by);
        return objectives(f);
      };
      const auto [lp, dp] = moved(h);
      const auto [lm, dm] = moved(-h);
      if (r != owner) continue;
      const double fd1 = (lp - lm) / (2 * h), fd2 = (dp - dm) / (2 * h);
      worst_first = std::max(worst_first, std::abs(fd1 - at[1].item(i)) / (atol + rtol * std::abs(fd1)));
      worst_second = std::max(worst_second, std::abs(fd2 - at[3].item(i)) / (atol + rtol * std::abs(fd2)));
    }
  }
  // γ is replicated: moving it moves every rank's; the ranks' gradients sum to ∂L/∂γ.
  double worst_gamma = 0;
  Tensor gamma_sum = at[2].clone();
  dist::all_reduce_sum(gamma_sum);
  for (int64_t c = 0; c < 3; ++c) {
    auto moved = [&](double by) {
      Feeds f = feeds;
      f["gamma"] = f["gamma"].clone();
      f["gamma"].set_item(c, f["gamma"].item(c) + by);
      return objectives(f).first;
    };
    const double fd = (moved(h) - moved(-h)) / (2 * h);
    worst_gamma = std::max(worst_gamma, std::abs(fd - gamma_sum.item(c)) / (atol + rtol * std::abs(fd)));
  }
  EXPECT_LE(worst_first, 1.0);
  EXPECT_LE(worst_second, 1.0);
  EXPECT_LE(worst_gamma, 1.0);
  std::cout << "[          ] rank " << r << ": scaled errors, first " << worst_first << ", second " << worst_second
            << ", gamma " << worst_gamma << "\n";
}

// Three SGDW steps of the tiny AgileNN step (attribution losses, SyncBN): two ranks with
// 4 images each against one rank (this process, in a world of one) with all 8. Sums taken
// in another order agree up to rounding: float64 to 1e-10 of each tensor's scale, float32
// to 5e-5 (measured worst: 1.2e-14 and 6.7e-6).
struct DataParallelCase {
  DType dtype;
  double rtol;
};

class DataParallel : public ::testing::TestWithParam<DataParallelCase> {};

std::unique_ptr<train::StepGraph> tiny_step(int64_t batch, int64_t replicas, DType dtype) {
  train::AgileNNStepOptions o;
  o.preset = models::preset("tiny");
  o.preset.input_size = 16;  // small and fast; the structure is the preset's
  o.batch = batch;
  o.dtype = dtype;
  o.sync_bn_replicas = replicas;
  o.ig.replicas = replicas;
  o.zero_point_table = false;
  return train::build_agilenn_step(o);
}

// The parameters and state after `steps` steps on batches [8 images] of which this
// trainer takes rows [first, first + batch).
nn::TensorMap train_steps(std::unique_ptr<train::StepGraph> step, int64_t first, int64_t batch, DType dtype,
                          size_t bucket_bytes, int steps) {
  nn::TensorMap values = step->params.initialise(7, dtype);
  auto opt = std::make_unique<train::SGDW>(train::CosineSchedule{0.1, 10, 0.0});
  train::Trainer trainer(std::move(step), values, std::move(opt), cpu_backend());
  trainer.set_gradient_bucket_bytes(bucket_bytes);
  for (int s = 0; s < steps; ++s) {
    const Tensor all = testing::random_tensor({8, 16, 16, 3}, dtype, 100 + s, -1, 1);
    Tensor images = Tensor::zeros({batch, 16, 16, 3}, dtype), labels = Tensor::zeros({batch}, DType::i32);
    for (int64_t i = 0; i < images.numel(); ++i) images.set_item(i, all.item(first * 16 * 16 * 3 + i));
    for (int64_t i = 0; i < batch; ++i) labels.set_item(i, static_cast<double>((first + i + s) % 10));
    trainer.step(images, labels, s);
  }
  return trainer.host_values();
}

double worst_scaled(const nn::TensorMap& a, const nn::TensorMap& b, double rtol, std::string* where) {
  double worst = 0;
  for (const auto& [name, t] : a) {
    const Tensor& u = b.at(name);
    double scale = 0, diff = 0;
    for (int64_t i = 0; i < t.numel(); ++i) {
      scale = std::max(scale, std::abs(t.item(i)));
      diff = std::max(diff, std::abs(t.item(i) - u.item(i)));
    }
    // Scaled by the tensor's magnitude, and at least by 1e-2 (biases before a batch norm
    // get no gradient and stay at rounding noise, 1e-8 in float32).
    const double e = diff / (rtol * std::max(scale, 1e-2));
    if (e > worst) worst = e, *where = name;
  }
  return worst;
}

TEST_P(DataParallel, TwoRanksWithHalfTheBatchTakeOneRanksSteps) {
  const auto [dtype, rtol] = GetParam();
  const int r = world().rank();
  const nn::TensorMap two = train_steps(tiny_step(4, 2, dtype), 4 * r, 4, dtype, size_t{25} << 20, 3);
  // Buckets of 1 KiB: many all-reduces, started while the backward runs; sums per element
  // do not depend on how the gradients are cut, so the result is bit-equal.
  const nn::TensorMap small_buckets = train_steps(tiny_step(4, 2, dtype), 4 * r, 4, dtype, 1024, 3);
  std::unique_ptr<dist::Communicator> job = dist::set_world(dist::single_process());
  const nn::TensorMap one = train_steps(tiny_step(8, 1, dtype), 0, 8, dtype, size_t{25} << 20, 3);
  dist::set_world(std::move(job));

  std::string where;
  const double e = worst_scaled(one, two, rtol, &where);
  EXPECT_LE(e, 1.0) << "worst at " << where;
  std::cout << "[          ] rank " << r << " " << dtype_name(dtype) << ": worst " << e * rtol
            << " of the tensor's scale (" << where << ")\n";
  for (const auto& [name, t] : two) EXPECT_EQ(t.to_vector(), small_buckets.at(name).to_vector()) << name;
  // The replicas are equal: the same parameters on both ranks (rank 0's, broadcast).
  for (const auto& [name, t] : two) {
    Tensor rank0 = t.clone();
    world().broadcast(rank0.raw(), rank0.nbytes(), 0);
    EXPECT_EQ(rank0.to_vector(), t.to_vector()) << name;
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, DataParallel,
                         ::testing::Values(DataParallelCase{DType::f64, 1e-10}, DataParallelCase{DType::f32, 5e-5}),
                         [](const auto& param_info) { return dtype_name(param_info.param.dtype); });

}  // namespace
}  // namespace agilenn

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  agilenn::dist::init();
  const int failed = RUN_ALL_TESTS();
  // Every rank's verdict: one failing rank fails the job.
  int any = failed != 0;
  agilenn::dist::world().all_reduce_sum(&any, 1, agilenn::DType::i32);
  agilenn::dist::finalize();
  return any != 0 ? 1 : 0;
}
