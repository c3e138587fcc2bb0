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

namespace {

Tensor& slot(nn::TensorMap& slots, const std::string& name, const Tensor& like) {
  auto it = slots.find(name);
  if (it == slots.end()) it = slots.emplace(name, Tensor::zeros(like.shape(), like.dtype())).first;
  return it->second;
}

void check_update(const nn::TensorMap& params, const std::vector<std::string>& names, const std::vector<Tensor>& grads) {
  AGILENN_CHECK(names.size() == grads.size(), "optimizer: " << names.size() << " names, " << grads.size() << " gradients");
  for (size_t i = 0; i < names.size(); ++i) {
    auto it = params.find(names[i]);
    AGILENN_CHECK(it != params.end(), "optimizer: no parameter '" << names[i] << "'");
    AGILENN_CHECK(it->second.shape() == grads[i].shape() && it->second.dtype() == grads[i].dtype(),
                  "optimizer: gradient of '" << names[i] << "' is " << shape_str(grads[i].shape()) << ", parameter "
                                             << shape_str(it->second.shape()));
  }
}

template <class F>
void for_each_float(const Tensor& t, F&& f) {
  if (t.dtype() == DType::f32) f(t.data<float>());
  else if (t.dtype() == DType::f64) f(t.data<double>());
  else AGILENN_THROW("optimizer: parameters must be floating-point");
}

}  // namespace

SGDW::SGDW(CosineSchedule lr, double momentum, double weight_decay)
    : Optimizer(lr), momentum_(momentum), weight_decay_(weight_decay) {}

void SGDW::apply(nn::TensorMap& params, const std::vector<std::string>& names, const std::vector<Tensor>& grads,
                 int64_t step) {
  check_update(params, names, grads);
  const double lr = lr_.at(step), wd = weight_decay_ * lr;
  for (size_t i = 0; i < names.size(); ++i) {
    Tensor& p = params.at(names[i]);
    Tensor& v = slot(slots_, names[i] + "/momentum", p);
    for_each_float(p, [&](auto* theta) {
      using T = std::remove_pointer_t<decltype(theta)>;
      const T* g = grads[i].data<T>();
      T* vel = v.data<T>();
      const T mu = static_cast<T>(momentum_), a = static_cast<T>(lr), decay = static_cast<T>(wd);
      for (int64_t j = 0; j < p.numel(); ++j) {
        vel[j] = mu * vel[j] - a * g[j];
        theta[j] = theta[j] - decay * theta[j] + vel[j];
      }
    });
  }
}

Adam::Adam(CosineSchedule lr, double beta1, double beta2, double eps)
    : Optimizer(lr), beta1_(beta1), beta2_(beta2), eps_(eps) {}

void Adam::apply(nn::TensorMap& params, const std::vector<std::string>& names, const std::vector<Tensor>& grads,
                 int64_t step) {
  check_update(params, names, grads);
  const double t = static_cast<double>(step + 1);
  const double lr = lr_.at(step) * std::sqrt(1 - std::pow(beta2_, t)) / (1 - std::pow(beta1_, t));
  for (size_t i = 0; i < names.size(); ++i) {
    Tensor& p = params.at(names[i]);
    Tensor& m = slot(slots_, names[i] + "/m", p);
    Tensor& v = slot(slots_, names[i] + "/v", p);
    for_each_float(p, [&](auto* theta) {
      using T = std::remove_pointer_t<decltype(theta)>;
      const T* g = grads[i].data<T>();
      T* mp = m.data<T>();
      T* vp = v.data<T>();
      const T b1 = static_cast<T>(beta1_), b2 = static_cast<T>(beta2_), a = static_cast<T>(lr), e = static_cast<T>(eps_);
      for (int64_t j = 0; j < p.numel(); ++j) {
        mp[j] = b1 * mp[j] + (1 - b1) * g[j];
        vp[j] = b2 * vp[j] + (1 - b2) * g[j] * g[j];
        theta[j] -= a * mp[j] / (std::sqrt(vp[j]) + e);
      }
    });
  }
}

}  // namespace agilenn::train
