// Runs a compiled StepGraph on a backend: feeds parameters, state and a batch; applies the
// optimizer to the gradients; writes the state updates back.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "engine/data/synthetic.h"
#include "engine/runtime/executor.h"
#include "engine/train/optimizer.h"
#include "engine/train/step.h"

namespace agilenn::train {

struct StepResult {
  double loss = 0;
  std::map<std::string, double> metrics;
};

class Trainer {
 public:
  // `values` holds every parameter and state tensor the step declares (see
  // ParamSet::initialise); the trainer works on its own copy, kept in the backend's memory
  // (uploaded here once; parameters, state and optimizer slots stay there between steps).
  // `optimizer` may be null for an evaluation step.
  Trainer(std::unique_ptr<StepGraph> step, nn::TensorMap values, std::unique_ptr<Optimizer> optimizer,
          Backend& backend = cpu_backend());

  // One step on a batch (host tensors, or tensors already in the backend's memory). Only the
  // loss and the metrics (scalars) come back to the host. A non-finite loss or gradient
  // throws naming the step, leaving values untouched. `global_step` (default: steps done by
  // this trainer) drives the schedule and dropout. `next`, when given, is the batch of the
  // following step: its upload starts now and overlaps this step's kernels (through pinned
  // memory on a copy stream on CUDA); a later step() given those same tensors uses it.
  StepResult step(const Tensor& images, const Tensor& labels, int64_t global_step = -1,
                  const data::Batch* next = nullptr);

  // Overwrites parameters, state and optimizer slots with these (host tensors or tensors
  // in this backend's memory) in the memory they already occupy, so a recorded step stays
  // valid. Every name must exist; slots not yet created are created.
  void load_state(const nn::TensorMap& values, const nn::TensorMap& slots);

  // Extra leaves (the zero-point table) fed with every step; uploaded once, here.
  void set_input(const std::string& name, const Tensor& value);

  // Parameters and state in the backend's memory (host tensors on the CPU backend).
  nn::TensorMap& values() { return values_; }
  // Host copies of values() and of the optimizer's slots, for checkpoints and evaluation
  // elsewhere; on the CPU backend they share storage with the live tensors.
  nn::TensorMap host_values() const;
  nn::TensorMap host_slots() const;
  const StepGraph& graph() const { return *step_; }
  int64_t steps_done() const { return step_count_; }
  const Plan& plan() const { return executor_->plan(); }
  Executor& executor() { return *executor_; }
  Optimizer& optimizer() { return *optimizer_; }
  Backend& backend() const { return backend_; }

 private:
  // A batch whose upload was started by an earlier step() (its `next`).
  struct Staged {
    Tensor host_images, host_labels;  // kept alive: identify the batch by storage
    Tensor images, labels;            // in the backend's memory
  };

  std::unique_ptr<StepGraph> step_;
  Backend& backend_;
  nn::TensorMap values_;
  std::unique_ptr<Optimizer> optimizer_;
  std::unique_ptr<Executor> executor_;
  std::map<std::string, Tensor> extra_;
  std::optional<Staged> staged_;
  int64_t step_count_ = 0;
};

}  // namespace agilenn::train
