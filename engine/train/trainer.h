// Runs a compiled StepGraph: feeds parameters, state and a batch; applies the optimizer
// to the gradients; writes the state updates back.
#pragma once

#include <map>
#include <memory>
#include <string>

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
  // ParamSet::initialise); the trainer works on its own copy. `optimizer` may be null
  // for an evaluation step.
  Trainer(std::unique_ptr<StepGraph> step, nn::TensorMap values, std::unique_ptr<Optimizer> optimizer,
          Backend& backend = cpu_backend());

  // One step on a batch. Non-finite loss throws naming the step, leaving values untouched.
  // `global_step` (default: steps done by this trainer) drives the schedule and dropout.
  StepResult step(const Tensor& images, const Tensor& labels, int64_t global_step = -1);

  // Extra leaves (the zero-point table) fed with every step.
  void set_input(const std::string& name, const Tensor& value) { extra_[name] = value; }

  nn::TensorMap& values() { return values_; }
  const StepGraph& graph() const { return *step_; }
  int64_t steps_done() const { return step_count_; }
  const Plan& plan() const { return executor_->plan(); }
  Executor& executor() { return *executor_; }
  Optimizer& optimizer() { return *optimizer_; }

 private:
  std::unique_ptr<StepGraph> step_;
  nn::TensorMap values_;
  std::unique_ptr<Optimizer> optimizer_;
  std::unique_ptr<Executor> executor_;
  std::map<std::string, Tensor> extra_;
  int64_t step_count_ = 0;
};

}  // namespace agilenn::train
