// The CPU backend's multi-tensor optimizer updates (float32 and float64), one parameter
// tensor after another, with the per-element math the CUDA kernels use (optimizer.cuh):
// the CPU backend is the fused kernels' twin.
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cuda/optimizer.cuh"

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

// The first NaN or infinity over `grads`, in list order then element order.
NonFinite first_non_finite(std::span<const Tensor> grads) {
  for (size_t k = 0; k < grads.size(); ++k) {
    const Tensor& g = grads[k];
    int64_t bad = -1;
    dispatch_param(g.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T* p = g.data<T>();
      for (int64_t i = 0; i < g.numel() && bad < 0; ++i)
        if (!cuda::optim::finite(p[i])) bad = i;
    });
    if (bad >= 0) return {static_cast<int64_t>(k), bad};
  }
  return {};
}

}  // namespace

NonFinite sgdw_update(std::span<Tensor> params, std::span<const Tensor> grads, std::span<Tensor> velocities,
                      const SgdwHyper& h) {
  check_update_operands("SGDW", params, grads, {velocities}, Device::cpu);
  if (const NonFinite bad = first_non_finite(grads); bad.found()) return bad;
  for (size_t i = 0; i < params.size(); ++i) {
    dispatch_param(params[i].dtype(), [&](auto zero) {
      using T = decltype(zero);
      T* theta = params[i].data<T>();
      const T* g = grads[i].data<T>();
      T* vel = velocities[i].data<T>();
      const T lr = static_cast<T>(h.lr), decay = static_cast<T>(h.decay), mu = static_cast<T>(h.momentum);
      for (int64_t j = 0; j < params[i].numel(); ++j) cuda::optim::sgdw_step(theta[j], vel[j], g[j], lr, decay, mu);
    });
  }
  return {};
}

NonFinite adam_update(std::span<Tensor> params, std::span<const Tensor> grads, std::span<Tensor> m,
                      std::span<Tensor> v, const AdamHyper& h) {
  check_update_operands("Adam", params, grads, {m, v}, Device::cpu);
  if (const NonFinite bad = first_non_finite(grads); bad.found()) return bad;
  for (size_t i = 0; i < params.size(); ++i) {
    dispatch_param(params[i].dtype(), [&](auto zero) {
      using T = decltype(zero);
      T* theta = params[i].data<T>();
      const T* g = grads[i].data<T>();
      T* mp = m[i].data<T>();
      T* vp = v[i].data<T>();
      const T step = static_cast<T>(h.step), b1 = static_cast<T>(h.beta1), b2 = static_cast<T>(h.beta2),
              eps = static_cast<T>(h.eps);
      for (int64_t j = 0; j < params[i].numel(); ++j)
        cuda::optim::adam_step(theta[j], mp[j], vp[j], g[j], step, b1, b2, eps);
    });
  }
  return {};
}

}  // namespace agilenn::cpu
