// Optimizers over named parameter tensors, with the seed's cosine schedules.
#pragma once

#include <string>
#include <vector>

#include "engine/nn/module.h"

namespace agilenn::train {

// initial · ((1 − floor) · ½(1 + cos(π · min(t, T) / T)) + floor)  (Keras' CosineDecay, alpha = floor).
struct CosineSchedule {
  double initial = 0.1;
  int64_t total_steps = 1;
  double floor = 0.0;
  double at(int64_t step) const;
};

class Optimizer {
 public:
  explicit Optimizer(CosineSchedule lr) : lr_(lr) {}
  virtual ~Optimizer() = default;
  // One update at step t (0-based) of params[names[i]] with grads[i].
  virtual void apply(nn::TensorMap& params, const std::vector<std::string>& names, const std::vector<Tensor>& grads,
                     int64_t step) = 0;
  // Slot tensors (momenta), named "<param>/<slot>", for checkpoints.
  nn::TensorMap& slots() { return slots_; }
  double learning_rate(int64_t step) const { return lr_.at(step); }

 protected:
  CosineSchedule lr_;
  nn::TensorMap slots_;
};

// SGD with momentum and decoupled weight decay (SGDW): with lr(t) from the schedule and
// wd(t) = weight_decay · lr(t):  θ ← θ − wd(t)·θ;  v ← μ·v − lr(t)·g;  θ ← θ + v.
class SGDW final : public Optimizer {
 public:
  SGDW(CosineSchedule lr, double momentum = 0.9, double weight_decay = 5e-4);
  void apply(nn::TensorMap& params, const std::vector<std::string>& names, const std::vector<Tensor>& grads,
             int64_t step) override;

 private:
  double momentum_, weight_decay_;
};

// Adam (Kingma & Ba) with bias correction; epsilon as Keras (1e-7).
class Adam final : public Optimizer {
 public:
  explicit Adam(CosineSchedule lr, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-7);
  void apply(nn::TensorMap& params, const std::vector<std::string>& names, const std::vector<Tensor>& grads,
             int64_t step) override;

 private:
  double beta1_, beta2_, eps_;
};

}  // namespace agilenn::train
