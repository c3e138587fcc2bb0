// The CPU backend's multi-tensor optimizer updates (float32 and float64), one parameter
// tensor after another, with the per-element math the CUDA kernels use
// (kernels/shared/optimizer.h) and the same guard (Backend::sgdw_update).
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/shared/optimizer.h"

namespace agilenn::cpu {
namespace {

template <class F>
void dispatch_param(DType t, F&& f) {
  switch (t) {
    case DType::f32: f(float{}); return;
    case DType::f64: f(double{}); return;
    default: AGILENN_THROW("optimizer: parameters must be floating-point, not " << dtype_name(t));
  }
}

// The first NaN or infinity over `lists`, one after another: (index, element) counting
// the tensors of all lists in order.
GuardTrip first_non_finite(std::initializer_list<std::span<const Tensor>> lists, int64_t step) {
  int64_t k = 0;
  for (std::span<const Tensor> list : lists)
    for (const Tensor& g : list) {
      int64_t bad = -1;
      dispatch_param(g.dtype(), [&](auto zero) {
        using T = decltype(zero);
        const T* p = g.data<T>();
        for (int64_t i = 0; i < g.numel() && bad < 0; ++i)
          if (!kernels::rn::finite(p[i])) bad = i;
      });
      if (bad >= 0) return {step, k, bad};
      ++k;
    }
  return {};
}

// Whether the update may run: the guard untripped and everything finite; trips it if not.
bool admit(std::span<const Tensor> grads, const UpdateGuard& guard) {
  double* state = guard.state.data<double>();
  if (state[0] >= 0) return false;
  const GuardTrip bad = first_non_finite({guard.checked, grads}, guard.step);
  if (!bad.tripped()) return true;
  state[0] = static_cast<double>(bad.step);
  state[1] = static_cast<double>(bad.tensor);
  state[2] = static_cast<double>(bad.element);
  return false;
}

void commit(const UpdateGuard& guard) {
  for (size_t i = 0; i < guard.commit_to.size(); ++i) guard.commit_to[i].copy_from(guard.commit_from[i]);
}

}  // namespace

void sgdw_update(std::span<Tensor> params, std::span<const Tensor> grads, std::span<Tensor> velocities,
                 const SgdwHyper& h, const UpdateGuard& guard) {
  check_update_operands("SGDW", params, grads, {velocities}, Device::cpu);
  check_update_guard("SGDW", guard, Device::cpu);
  if (!admit(grads, guard)) return;
  for (size_t i = 0; i < params.size(); ++i) {
    dispatch_param(params[i].dtype(), [&](auto zero) {
      using T = decltype(zero);
      T* theta = params[i].data<T>();
      const T* g = grads[i].data<T>();
      T* vel = velocities[i].data<T>();
      const T lr = static_cast<T>(h.lr), decay = static_cast<T>(h.decay), mu = static_cast<T>(h.momentum),
              scale = static_cast<T>(h.grad_scale);
      for (int64_t j = 0; j < params[i].numel(); ++j)
        kernels::optim::sgdw_step(theta[j], vel[j], g[j], scale, lr, decay, mu);
    });
  }
  commit(guard);
}

void adam_update(std::span<Tensor> params, std::span<const Tensor> grads, std::span<Tensor> m, std::span<Tensor> v,
                 const AdamHyper& h, const UpdateGuard& guard) {
  check_update_operands("Adam", params, grads, {m, v}, Device::cpu);
  check_update_guard("Adam", guard, Device::cpu);
  if (!admit(grads, guard)) return;
  for (size_t i = 0; i < params.size(); ++i) {
    dispatch_param(params[i].dtype(), [&](auto zero) {
      using T = decltype(zero);
      T* theta = params[i].data<T>();
      const T* g = grads[i].data<T>();
      T* mp = m[i].data<T>();
      T* vp = v[i].data<T>();
      const T step = static_cast<T>(h.step), b1 = static_cast<T>(h.beta1), b2 = static_cast<T>(h.beta2),
              eps = static_cast<T>(h.eps), scale = static_cast<T>(h.grad_scale);
      for (int64_t j = 0; j < params[i].numel(); ++j)
        kernels::optim::adam_step(theta[j], mp[j], vp[j], g[j], scale, step, b1, b2, eps);
    });
  }
  commit(guard);
}

}  // namespace agilenn::cpu
