#include "engine/train/optimizer.h"

#include <algorithm>
#include <cmath>

#include "engine/core/error.h"

namespace agilenn::train {

double CosineSchedule::at(int64_t step) const {
  const double pi = std::acos(-1.0);
  const double t = static_cast<double>(std::min(step, total_steps)) / static_cast<double>(std::max<int64_t>(total_steps, 1));
  return initial * ((1.0 - floor) * 0.5 * (1.0 + std::cos(pi * t)) + floor);
}

void Optimizer::apply(nn::TensorMap& params, const std::vector<std::string>& names, const std::vector<Tensor>& grads,
                      const UpdateGuard& guard, Backend& backend) {
  AGILENN_CHECK(names.size() == grads.size(), "optimizer: " << names.size() << " names, " << grads.size() << " gradients");
  std::vector<Tensor> ps;
  ps.reserve(names.size());
  for (size_t i = 0; i < names.size(); ++i) {
    auto it = params.find(names[i]);
    AGILENN_CHECK(it != params.end(), "optimizer: no parameter '" << names[i] << "'");
    AGILENN_CHECK(it->second.shape() == grads[i].shape() && it->second.dtype() == grads[i].dtype(),
                  "optimizer: gradient of '" << names[i] << "' is " << shape_str(grads[i].shape()) << ", parameter "
                                             << shape_str(it->second.shape()));
    AGILENN_CHECK(is_floating(it->second.dtype()), "optimizer: parameters must be floating-point");
    ps.push_back(it->second);  // shares the parameter's storage: updated in place
  }
  update(backend, ps, grads, names, guard);
}

Tensor& Optimizer::slot(Backend& backend, const std::string& name, const Tensor& like) {
  auto it = slots_.find(name);
  if (it == slots_.end()) {
    it = slots_.emplace(name, backend.to_device(Tensor::zeros(like.shape(), like.dtype()))).first;
  } else {
    AGILENN_CHECK(it->second.shape() == like.shape() && it->second.dtype() == like.dtype(),
                  "optimizer slot '" << name << "' is " << shape_str(it->second.shape()) << " "
                                     << dtype_name(it->second.dtype()) << ", its parameter " << shape_str(like.shape())
                                     << " " << dtype_name(like.dtype()));
    if (it->second.device() != backend.device()) it->second = backend.to_device(it->second);
  }
  return it->second;
}

nn::TensorMap Optimizer::host_slots(Backend& backend) const {
  nn::TensorMap out;
  for (const auto& [name, t] : slots_) out.emplace(name, t.device() == Device::cpu ? t : backend.to_host(t));
  return out;
}

SGDW::SGDW(CosineSchedule lr, double momentum, double weight_decay)
    : Optimizer(lr), momentum_(momentum), weight_decay_(weight_decay) {}

void SGDW::update(Backend& backend, std::span<Tensor> params, std::span<const Tensor> grads,
                  const std::vector<std::string>& names, const UpdateGuard& guard) {
  const int64_t step = guard.step;
  std::vector<Tensor> velocities;
  velocities.reserve(params.size());
  for (size_t i = 0; i < params.size(); ++i) velocities.push_back(slot(backend, names[i] + "/momentum", params[i]));
  SgdwHyper h;
  h.lr = lr_.at(step);
  h.decay = weight_decay_ * h.lr;
  h.momentum = momentum_;
  h.grad_scale = grad_scale_;
  backend.sgdw_update(params, grads, velocities, h, guard);
}

Adam::Adam(CosineSchedule lr, double beta1, double beta2, double eps)
    : Optimizer(lr), beta1_(beta1), beta2_(beta2), eps_(eps) {}

void Adam::update(Backend& backend, std::span<Tensor> params, std::span<const Tensor> grads,
                  const std::vector<std::string>& names, const UpdateGuard& guard) {
  const int64_t step = guard.step;
  std::vector<Tensor> m, v;
  m.reserve(params.size());
  v.reserve(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    m.push_back(slot(backend, names[i] + "/m", params[i]));
    v.push_back(slot(backend, names[i] + "/v", params[i]));
  }
  const double t = static_cast<double>(step + 1);
  AdamHyper h;
  h.step = lr_.at(step) * std::sqrt(1 - std::pow(beta2_, t)) / (1 - std::pow(beta1_, t));
  h.beta1 = beta1_;
  h.beta2 = beta2_;
  h.eps = eps_;
  h.grad_scale = grad_scale_;
  backend.adam_update(params, grads, m, v, h, guard);
}

}  // namespace agilenn::train
