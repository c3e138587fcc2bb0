// The fused multi-tensor optimizer updates.
//
// CudaOptimizer.CpuBackend*: the CPU backend's update (the kernels' twin: the same
// per-element math, kernels/shared/optimizer.h) against the formulas in long double. Runs
// without a GPU.
// CudaOptimizer.Kernel*: the CUDA kernels against the CPU backend, bit for bit: every
// operation of optimizer.h is an explicitly rounded IEEE intrinsic on the GPU (no fused
// multiply-add contraction; division and square root correctly rounded), exactly what the
// host computes with plain operators. Skipped without a GPU.
// All over many tensors of awkward sizes (empty, 1, around the 256-thread block and the
// 4096-element chunk, primes), in float32 and float64, over several steps of a schedule.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <vector>

#include "engine/ir/ops.h"
#include "engine/runtime/executor.h"
#include "engine/train/optimizer.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/optimizer.h"
#include "tests/test_util.h"
#include "tests/gpu_test_util.h"

namespace agilenn {
namespace {

using testing::random_tensor;

const std::vector<Shape>& awkward_shapes() {
  static const std::vector<Shape> shapes = {
      {1},     {3},         {0, 4},   {255},  {256},  {257},        {3, 3, 1, 4}, {4095},   {4096},
      {4097},  {10007},     {24},     {2, 5}, {8191}, {17, 31, 19}, {1, 1, 1, 1}, {12289},  {7, 6, 5},
      {65537}, {3, 3, 4, 24}, {1000}, {96},   {513},  {2},          {4096, 3},    {40961},  {11},
  };
  return shapes;
}

// Parameters, gradients per step, and two slot lists (SGDW uses the first).
struct Operands {
  std::vector<Tensor> params, slot1, slot2;
  std::vector<std::vector<Tensor>> grads;  // [step][tensor]
};

Operands make_operands(DType dt, int steps, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Operands o;
  for (const Shape& s : awkward_shapes()) {
    o.params.push_back(random_tensor(s, dt, rng, -1.0, 1.0));
    o.slot1.push_back(random_tensor(s, dt, rng, -0.05, 0.05));
    o.slot2.push_back(random_tensor(s, dt, rng, 0.0, 0.01));  // Adam's second moment is non-negative
  }
  for (int k = 0; k < steps; ++k) {
    o.grads.emplace_back();
    for (const Shape& s : awkward_shapes()) o.grads.back().push_back(random_tensor(s, dt, rng, -0.5, 0.5));
  }
  return o;
}

std::vector<Tensor> clones(const std::vector<Tensor>& ts) {
  std::vector<Tensor> out;
  for (const Tensor& t : ts) out.push_back(t.clone());
  return out;
}

std::vector<Tensor> on(Backend& b, const std::vector<Tensor>& ts) {
  std::vector<Tensor> out;
  for (const Tensor& t : ts) out.push_back(b.to_device(t));
  return out;
}

std::vector<Tensor> hosted(Backend& b, const std::vector<Tensor>& ts) {
  std::vector<Tensor> out;
  for (const Tensor& t : ts) out.push_back(b.to_host(t));
  return out;
}

bool bit_equal(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

void expect_bit_equal(const std::vector<Tensor>& a, const std::vector<Tensor>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i)
    EXPECT_TRUE(bit_equal(a[i], b[i])) << what << " " << i << " " << shape_str(a[i].shape());
}

// The hyperparameters of step k of a short cosine schedule; odd steps take the gradients
// as sums over 3 data-parallel ranks (gradient scale 1/3, not a power of two).
double grad_scale(int k) { return k % 2 == 1 ? 1.0 / 3 : 1.0; }
SgdwHyper sgdw_hyper(int k) {
  const double lr = train::CosineSchedule{0.1, 5, 0.0}.at(k);
  return {lr, 5e-4 * lr, 0.9, grad_scale(k)};
}
AdamHyper adam_hyper(int k) {
  const double t = k + 1;
  return {3e-3 * std::sqrt(1 - std::pow(0.999, t)) / (1 - std::pow(0.9, t)), 0.9, 0.999, 1e-7, grad_scale(k)};
}

// One implementation of the two updates over lists of tensors in one memory.
struct Updater {
  std::function<void(std::vector<Tensor>&, const std::vector<Tensor>&, std::vector<Tensor>&, const SgdwHyper&,
                     const UpdateGuard&)>
      sgdw;
  std::function<void(std::vector<Tensor>&, const std::vector<Tensor>&, std::vector<Tensor>&, std::vector<Tensor>&,
                     const AdamHyper&, const UpdateGuard&)>
      adam;
};

Updater backend_updater(Backend& b) {
  return {[&b](auto& p, const auto& g, auto& v, const SgdwHyper& h, const UpdateGuard& gd) {
            b.sgdw_update(p, g, v, h, gd);
          },
          [&b](auto& p, const auto& g, auto& m, auto& v, const AdamHyper& h, const UpdateGuard& gd) {
            b.adam_update(p, g, m, v, h, gd);
          }};
}

// An untripped guard in `mem` for an update at `step`.
UpdateGuard fresh_guard(Backend& mem, int64_t step) {
  UpdateGuard g;
  g.state = new_update_guard(mem);
  g.step = step;
  return g;
}

// Runs `steps` SGDW and Adam updates from `o` with `u` in the memory of `mem` (the CPU for
// host updaters); returns the host results: params and slots after SGDW, then after Adam.
struct Results {
  std::vector<Tensor> sgdw_params, sgdw_velocity, adam_params, adam_m, adam_v;
};

Results run_updates(const Operands& o, const Updater& u, Backend& mem) {
  Results r;
  {
    std::vector<Tensor> p = on(mem, clones(o.params)), v = on(mem, clones(o.slot1));
    for (size_t k = 0; k < o.grads.size(); ++k) {
      const std::vector<Tensor> g = on(mem, o.grads[k]);
      const UpdateGuard guard = fresh_guard(mem, static_cast<int64_t>(k));
      u.sgdw(p, g, v, sgdw_hyper(static_cast<int>(k)), guard);
      EXPECT_FALSE(read_guard(mem, guard.state).tripped());
    }
    r.sgdw_params = hosted(mem, p);
    r.sgdw_velocity = hosted(mem, v);
  }
  {
    std::vector<Tensor> p = on(mem, clones(o.params)), m = on(mem, clones(o.slot1)), v = on(mem, clones(o.slot2));
    for (size_t k = 0; k < o.grads.size(); ++k) {
      const std::vector<Tensor> g = on(mem, o.grads[k]);
      const UpdateGuard guard = fresh_guard(mem, static_cast<int64_t>(k));
      u.adam(p, g, m, v, adam_hyper(static_cast<int>(k)), guard);
      EXPECT_FALSE(read_guard(mem, guard.state).tripped());
    }
    r.adam_params = hosted(mem, p);
    r.adam_m = hosted(mem, m);
    r.adam_v = hosted(mem, v);
  }
  return r;
}

void expect_same_results(const Results& a, const Results& b) {
  expect_bit_equal(a.sgdw_params, b.sgdw_params, "SGDW parameter");
  expect_bit_equal(a.sgdw_velocity, b.sgdw_velocity, "SGDW velocity");
  expect_bit_equal(a.adam_params, b.adam_params, "Adam parameter");
  expect_bit_equal(a.adam_m, b.adam_m, "Adam m");
  expect_bit_equal(a.adam_v, b.adam_v, "Adam v");
}

// A NaN and infinities placed in the gradients: the guard records the first (list order,
// counting the checked tensors first, then element order) and the step, and no parameter,
// slot or commit destination changes; a tripped guard refuses a clean update too. A NaN
// in a checked tensor (the loss) is found before any gradient's.
void expect_non_finite_refused(const Updater& u, Backend& mem, DType dt) {
  const Operands o = make_operands(dt, 1, 5);
  std::vector<Tensor> g = clones(o.grads[0]);
  g[9].set_item(4000, std::numeric_limits<double>::infinity());  // {4097}
  g[10].set_item(17, std::numeric_limits<double>::quiet_NaN());  // {10007}
  g[9].set_item(4096, -std::numeric_limits<double>::infinity());
  g[20].set_item(0, std::numeric_limits<double>::quiet_NaN());
  const std::vector<Tensor> dg = on(mem, g), clean = on(mem, o.grads[0]);
  std::vector<Tensor> p = on(mem, clones(o.params)), m = on(mem, clones(o.slot1)), v = on(mem, clones(o.slot2));
  const std::vector<Tensor> loss{mem.to_device(Tensor::scalar(1.5, dt))};
  std::vector<Tensor> state_to{mem.to_device(Tensor::zeros({5}, dt))};
  const std::vector<Tensor> state_from{mem.to_device(Tensor::from_vector({5}, {1, 2, 3, 4, 5}, dt))};
  auto guarded = [&](int64_t step) {
    UpdateGuard gd = fresh_guard(mem, step);
    gd.checked = loss;
    gd.commit_from = state_from;
    gd.commit_to = state_to;
    return gd;
  };
  UpdateGuard gd = guarded(7);
  u.sgdw(p, dg, m, sgdw_hyper(0), gd);
  GuardTrip trip = read_guard(mem, gd.state);
  EXPECT_EQ(trip.step, 7);
  EXPECT_EQ(trip.tensor, 1 + 9);  // the loss is list index 0
  EXPECT_EQ(trip.element, 4000);
  u.sgdw(p, clean, m, sgdw_hyper(1), gd);  // tripped: refused however clean
  EXPECT_EQ(read_guard(mem, gd.state).step, 7);
  gd = guarded(3);
  u.adam(p, dg, m, v, adam_hyper(0), gd);
  trip = read_guard(mem, gd.state);
  EXPECT_EQ(trip.step, 3);
  EXPECT_EQ(trip.tensor, 10);
  EXPECT_EQ(trip.element, 4000);
  gd = guarded(4);
  Tensor bad_loss = Tensor::scalar(1.5, dt);
  bad_loss.set_item(0, std::numeric_limits<double>::quiet_NaN());
  const std::vector<Tensor> nan_loss{mem.to_device(bad_loss)};
  gd.checked = nan_loss;
  u.sgdw(p, dg, m, sgdw_hyper(0), gd);
  trip = read_guard(mem, gd.state);
  EXPECT_EQ(trip.tensor, 0);
  EXPECT_EQ(trip.element, 0);
  expect_bit_equal(hosted(mem, p), o.params, "parameter after a refused update");
  expect_bit_equal(hosted(mem, m), o.slot1, "slot after a refused update");
  expect_bit_equal(hosted(mem, v), o.slot2, "second slot after a refused update");
  EXPECT_EQ(mem.to_host(state_to[0]).to_vector(), std::vector<double>(5, 0.0)) << "committed despite the refusal";
  // Admitted, the commit happens with the update.
  gd = guarded(5);
  u.sgdw(p, clean, m, sgdw_hyper(0), gd);
  EXPECT_FALSE(read_guard(mem, gd.state).tripped());
  EXPECT_EQ(mem.to_host(state_to[0]).to_vector(), (std::vector<double>{1, 2, 3, 4, 5}));
}

// The CPU backend's updates (the kernels' twin) against the update formulas evaluated
// here in long double, element by element. Each of the 4 steps rounds a handful of
// operations whose terms are as large as the tensor's largest element (velocities cancel
// momentum against the gradient), so the bound is 16 ulps of that largest element, in
// float32 and float64: a wrong term (decay, momentum, bias correction) is off by far more.
Results reference_updates(const Operands& o, DType dt) {
  // The hyperparameters as the update receives them: rounded to the parameters' dtype.
  auto as_t = [dt](double x) { return static_cast<long double>(dt == DType::f32 ? static_cast<float>(x) : x); };
  Results r;
  r.sgdw_params = clones(o.params), r.sgdw_velocity = clones(o.slot1);
  r.adam_params = clones(o.params), r.adam_m = clones(o.slot1), r.adam_v = clones(o.slot2);
  for (size_t k = 0; k < o.grads.size(); ++k) {
    const SgdwHyper sh = sgdw_hyper(static_cast<int>(k));
    const AdamHyper ah = adam_hyper(static_cast<int>(k));
    for (size_t i = 0; i < o.params.size(); ++i)
      for (int64_t j = 0; j < o.params[i].numel(); ++j) {
        const long double g = as_t(grad_scale(static_cast<int>(k))) * o.grads[k][i].item(j);
        long double theta = r.sgdw_params[i].item(j), v = r.sgdw_velocity[i].item(j);
        v = as_t(sh.momentum) * v - as_t(sh.lr) * g;
        theta = theta - as_t(sh.decay) * theta + v;
        r.sgdw_params[i].set_item(j, static_cast<double>(theta));
        r.sgdw_velocity[i].set_item(j, static_cast<double>(v));
        long double a = r.adam_params[i].item(j), m = r.adam_m[i].item(j), s = r.adam_v[i].item(j);
        m = as_t(ah.beta1) * m + (1 - as_t(ah.beta1)) * g;
        s = as_t(ah.beta2) * s + (1 - as_t(ah.beta2)) * g * g;
        a = a - as_t(ah.step) * m / (std::sqrt(s) + as_t(ah.eps));
        r.adam_params[i].set_item(j, static_cast<double>(a));
        r.adam_m[i].set_item(j, static_cast<double>(m));
        r.adam_v[i].set_item(j, static_cast<double>(s));
      }
  }
  return r;
}

void expect_near_reference(const std::vector<Tensor>& got, const std::vector<Tensor>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    const double ulp = got[i].dtype() == DType::f32 ? 0x1.0p-23 : 0x1.0p-52;
    double scale = 0;
    for (int64_t j = 0; j < want[i].numel(); ++j) scale = std::max(scale, std::abs(want[i].item(j)));
    for (int64_t j = 0; j < got[i].numel(); ++j)
      ASSERT_LE(std::abs(got[i].item(j) - want[i].item(j)), 16 * ulp * scale)
          << what << " " << i << " " << shape_str(got[i].shape()) << " element " << j;
  }
}

TEST(CudaOptimizer, CpuBackendFollowsTheUpdateFormulas) {
  for (DType dt : {DType::f32, DType::f64}) {
    SCOPED_TRACE(dtype_name(dt));
    const Operands o = make_operands(dt, 4, 11);
    const Results got = run_updates(o, backend_updater(cpu_backend()), cpu_backend()), want = reference_updates(o, dt);
    expect_near_reference(got.sgdw_params, want.sgdw_params, "SGDW parameter");
    expect_near_reference(got.sgdw_velocity, want.sgdw_velocity, "SGDW velocity");
    expect_near_reference(got.adam_params, want.adam_params, "Adam parameter");
    expect_near_reference(got.adam_m, want.adam_m, "Adam m");
    expect_near_reference(got.adam_v, want.adam_v, "Adam v");
  }
}

TEST(CudaOptimizer, CpuBackendTripsTheGuardOnNonFiniteValuesLeavingEverything) {
  for (DType dt : {DType::f32, DType::f64}) {
    SCOPED_TRACE(dtype_name(dt));
    expect_non_finite_refused(backend_updater(cpu_backend()), cpu_backend(), dt);
  }
}

TEST(CudaOptimizer, OptimizerClassesGiveTheSeedsUpdateOnTheCpuBackend) {
  // One SGDW step from zero momentum is θ(1 − wd·lr) − lr·g; one Adam step moves each
  // element by lr·sign(g) (bias-corrected m/√v = g/|g|, up to eps).
  nn::TensorMap params{{"w", Tensor::from_vector({3}, {1.0, -2.0, 0.5}, DType::f64)}};
  const std::vector<Tensor> g{Tensor::from_vector({3}, {0.5, -1.0, 0.0}, DType::f64)};
  train::SGDW sgdw(train::CosineSchedule{0.1, 10, 0.0}, 0.9, 5e-4);
  const UpdateGuard guard = fresh_guard(cpu_backend(), 0);
  sgdw.apply(params, {"w"}, g, guard, cpu_backend());
  EXPECT_FALSE(read_guard(cpu_backend(), guard.state).tripped());
  const std::vector<double> w = params.at("w").to_vector();
  EXPECT_DOUBLE_EQ(w[0], 1.0 - 5e-5 * 1.0 - 0.05);
  EXPECT_DOUBLE_EQ(w[1], -2.0 + 5e-5 * 2.0 + 0.1);
  EXPECT_DOUBLE_EQ(w[2], 0.5 - 5e-5 * 0.5);
  EXPECT_EQ(sgdw.slots().at("w/momentum").to_vector(), (std::vector<double>{-0.05, 0.1, 0.0}));

  nn::TensorMap q{{"w", Tensor::from_vector({3}, {1.0, -2.0, 0.5}, DType::f64)}};
  train::Adam adam(train::CosineSchedule{1e-3, 10, 0.0});
  adam.apply(q, {"w"}, g, fresh_guard(cpu_backend(), 0), cpu_backend());
  const std::vector<double> a = q.at("w").to_vector();
  EXPECT_NEAR(a[0], 1.0 - 1e-3, 1e-8);  // eps/√v ≈ 6e-6 of the step
  EXPECT_NEAR(a[1], -2.0 + 1e-3, 1e-8);
  EXPECT_DOUBLE_EQ(a[2], 0.5);
}

TEST(CudaOptimizer, KernelsMatchTheCpuBackendBitForBit) {
  AGILENN_SKIP_WITHOUT_GPU();
  for (DType dt : {DType::f32, DType::f64}) {
    SCOPED_TRACE(dtype_name(dt));
    const Operands o = make_operands(dt, 4, 23);
    expect_same_results(run_updates(o, backend_updater(cuda_backend()), cuda_backend()),
                        run_updates(o, backend_updater(cpu_backend()), cpu_backend()));
  }
}

TEST(CudaOptimizer, KernelsTripTheGuardOnNonFiniteValuesLeavingEverything) {
  AGILENN_SKIP_WITHOUT_GPU();
  for (DType dt : {DType::f32, DType::f64}) {
    SCOPED_TRACE(dtype_name(dt));
    expect_non_finite_refused(backend_updater(cuda_backend()), cuda_backend(), dt);
  }
}

// An index fault recorded by a kernel and not yet taken trips the guard by itself (a bad
// index in gather_backward or one_hot leaves every value finite): the update is refused
// with the fault's mark, and the fault is still there to be raised with its text.
TEST(CudaOptimizer, AnUntakenIndexFaultTripsTheGuard) {
  AGILENN_SKIP_WITHOUT_GPU();
  Graph g;
  Value idx = ops::leaf(g, "idx", {2}, DType::i32);
  Value y = ops::one_hot(idx, 4, DType::f32);
  Executor ex(g, compile(g, {y.id()}), cuda_backend());
  const std::vector<Tensor> out = ex.run({{"idx", Tensor::from_vector({2}, {1, 7}, DType::i32)}});
  const Operands o = make_operands(DType::f32, 1, 41);
  std::vector<Tensor> p = on(cuda_backend(), clones(o.params)), v = on(cuda_backend(), clones(o.slot1));
  const std::vector<Tensor> grads = on(cuda_backend(), o.grads[0]);
  const UpdateGuard guard = fresh_guard(cuda_backend(), 12);
  cuda_backend().sgdw_update(p, grads, v, sgdw_hyper(0), guard);
  const GuardTrip trip = read_guard(cuda_backend(), guard.state);
  EXPECT_EQ(trip.step, 12);
  EXPECT_EQ(trip.tensor, kFaultTrip);
  expect_bit_equal(hosted(cuda_backend(), p), o.params, "parameter after a refused update");
  std::string message;
  try {
    ex.check_faults();
  } catch (const Error& e) {
    message = e.what();
  }
  EXPECT_NE(message.find("op 'one_hot': index 7 at position 1 is outside [0, 4)"), std::string::npos) << message;
}

// The device table is re-sent only when the tensors change: the same tensors twice, then
// a subset in another order, then the first set again, each against the CPU backend.
TEST(CudaOptimizer, KernelsFollowChangingTensorLists) {
  AGILENN_SKIP_WITHOUT_GPU();
  const Operands o = make_operands(DType::f32, 1, 31);
  std::vector<Tensor> hp = clones(o.params), hv = clones(o.slot1);
  std::vector<Tensor> dp = on(cuda_backend(), hp), dv = on(cuda_backend(), hv);
  const std::vector<Tensor> hg = o.grads[0], dg = on(cuda_backend(), hg);
  auto both = [&](const std::vector<size_t>& pick, int k) {
    std::vector<Tensor> p1, v1, g1, p2, v2, g2;
    for (size_t i : pick) {
      p1.push_back(hp[i]), v1.push_back(hv[i]), g1.push_back(hg[i]);
      p2.push_back(dp[i]), v2.push_back(dv[i]), g2.push_back(dg[i]);
    }
    const UpdateGuard host_guard = fresh_guard(cpu_backend(), k), device_guard = fresh_guard(cuda_backend(), k);
    cpu_backend().sgdw_update(p1, g1, v1, sgdw_hyper(k), host_guard);
    cuda_backend().sgdw_update(p2, g2, v2, sgdw_hyper(k), device_guard);
    EXPECT_FALSE(read_guard(cpu_backend(), host_guard.state).tripped());
    EXPECT_FALSE(read_guard(cuda_backend(), device_guard.state).tripped());
  };
  std::vector<size_t> all(o.params.size()), some;
  for (size_t i = 0; i < all.size(); ++i) all[i] = i;
  for (size_t i = all.size(); i-- > 0;)
    if (i % 3 != 1) some.push_back(i);
  both(all, 0);
  both(all, 1);
  both(some, 2);
  both(all, 3);
  expect_bit_equal(hosted(cuda_backend(), dp), hp, "parameter");
  expect_bit_equal(hosted(cuda_backend(), dv), hv, "velocity");
}

}  // namespace
}  // namespace agilenn
