// Optimizers over named parameter tensors, with the seed's cosine schedules.
#pragma once

#include <string>
#include <vector>

#include "engine/nn/params.h"
#include "engine/runtime/backend.h"

namespace agilenn::train {

// initial · ((1 − floor) · ½(1 + cos(π · min(t, T) / T)) + floor)  (Keras' CosineDecay, alpha = floor).
struct CosineSchedule {
  double initial = 0.1;
  int64_t total_steps = 1;
  double floor = 0.0;
  double at(int64_t step) const;
};

// The update math itself runs in the backend (Backend::sgdw_update, adam_update), on all
// parameters at once; an optimizer holds the schedule, the hyperparameters and the slots.
class Optimizer {
 public:
  explicit Optimizer(CosineSchedule lr) : lr_(lr) {}
  virtual ~Optimizer() = default;
  // One update at step guard.step (0-based) of params[names[i]] with grads[i], run by
  // `backend`, in whose memory the parameters and gradients are, guarded and committing as
  // Backend::sgdw_update says. Missing slots are created there as zeros; slots in other
  // memory (host tensors from a checkpoint) are moved there first.
  void apply(nn::TensorMap& params, const std::vector<std::string>& names, const std::vector<Tensor>& grads,
             const UpdateGuard& guard, Backend& backend);
  // Slot tensors (momenta), named "<param>/<slot>", for checkpoints: in the memory of the
  // backend of the last update; host_slots() gives host copies.
  nn::TensorMap& slots() { return slots_; }
  nn::TensorMap host_slots(Backend& backend) const;
  double learning_rate(int64_t step) const { return lr_.at(step); }
  // The gradients given are `1/scale` times the gradient of the loss (the sum over the N
  // ranks of a data-parallel job: scale 1/N); the update applies the scale itself.
  void set_grad_scale(double scale) { grad_scale_ = scale; }

 protected:
  virtual void update(Backend& backend, std::span<Tensor> params, std::span<const Tensor> grads,
                      const std::vector<std::string>& names, const UpdateGuard& guard) = 0;
  // The slot `name` (zeros like `like` when new), in the backend's memory.
  Tensor& slot(Backend& backend, const std::string& name, const Tensor& like);

  CosineSchedule lr_;
  double grad_scale_ = 1;
  nn::TensorMap slots_;
};

// SGD with momentum and decoupled weight decay (SGDW): with lr(t) from the schedule and
// wd(t) = weight_decay · lr(t):  θ ← θ − wd(t)·θ;  v ← μ·v − lr(t)·g;  θ ← θ + v.
class SGDW final : public Optimizer {
 public:
  SGDW(CosineSchedule lr, double momentum = 0.9, double weight_decay = 5e-4);

 protected:
  void update(Backend& backend, std::span<Tensor> params, std::span<const Tensor> grads,
              const std::vector<std::string>& names, const UpdateGuard& guard) override;

 private:
  double momentum_, weight_decay_;
};

// Adam (Kingma & Ba) with bias correction; epsilon as Keras (1e-7).
class Adam final : public Optimizer {
 public:
  explicit Adam(CosineSchedule lr, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-7);

 protected:
  void update(Backend& backend, std::span<Tensor> params, std::span<const Tensor> grads,
              const std::vector<std::string>& names, const UpdateGuard& guard) override;

 private:
  double beta1_, beta2_, eps_;
};

}  // namespace agilenn::train
