// Runs a compiled StepGraph on a backend: feeds parameters, state and a batch; applies the
// optimizer to the gradients; writes the state updates back.
#pragma once

#include <array>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "engine/data/synthetic.h"
#include "engine/runtime/executor.h"
#include "engine/train/gradient_buckets.h"
#include "engine/train/optimizer.h"
#include "engine/train/step.h"

namespace agilenn::train {

struct StepResult {
  int64_t step = 0;  // the global step
  double loss = 0;
  std::map<std::string, double> metrics;
};

// How agilenn-train compiles a training step for `backend`: elementwise fusion where its
// fused kernel is validated (the CPU; CUDA once the GPU parity test has run on a GPU), and
// rematerialisation under `memory_budget` when one is given.
CompileOptions step_compile_options(const Backend& backend, std::optional<size_t> memory_budget = {});

class Trainer {
 public:
  // `values` holds every parameter and state tensor the step declares (see
  // ParamSet::initialise); the trainer works on its own copy, kept in the backend's memory
  // (uploaded here once; parameters, state and optimizer slots stay there between steps).
  // `optimizer` may be null for an evaluation step. `compile` sets the step's
  // rematerialisation (a memory budget for its arena).
  Trainer(std::unique_ptr<StepGraph> step, nn::TensorMap values, std::unique_ptr<Optimizer> optimizer,
          Backend& backend, const CompileOptions& compile = {});

  // Launches one step on a batch (host tensors, or tensors already in the backend's
  // memory) and returns without waiting for it: the loss and metrics stay in the backend's
  // memory until collect(). `global_step` (default: steps launched by this trainer) drives
  // the schedule and dropout. `next`, when given, is the batch of the following step: its
  // upload starts now and overlaps this step's kernels (through pinned memory on a copy
  // stream on CUDA, into the other of two fixed input buffers); a later enqueue() given
  // those same tensors uses it. A step whose loss or gradient is not finite, or whose
  // kernels met an index outside its range on the GPU, changes no parameter, slot or state,
  // and neither does any later step: collect() then throws naming it ("step 12: loss is
  // nan; parameters left as they were").
  void enqueue(const Tensor& images, const Tensor& labels, int64_t global_step = -1,
               const data::Batch* next = nullptr);
  // The results of the steps launched since the last collect(), in order; waits for them.
  std::vector<StepResult> collect();
  // enqueue() and collect(): one step, waited for.
  StepResult step(const Tensor& images, const Tensor& labels, int64_t global_step = -1,
                  const data::Batch* next = nullptr);

  // Overwrites parameters, state and optimizer slots with these (host tensors or tensors
  // in this backend's memory) in the memory they already occupy, so a recorded step stays
  // valid. Every name must exist; slots not yet created are created.
  void load_state(const nn::TensorMap& values, const nn::TensorMap& slots);

  // Data parallel (dist::world() of N > 1 ranks, set before the trainer is made): every
  // rank runs this step on its own batch; the gradients are summed over the ranks in
  // buckets of at most this many bytes while the backward runs (GradientBuckets), the
  // optimizer takes their mean (its gradient scale 1/N), and the loss and metrics each step
  // reports, and the guard checks, are the means over the ranks. Default 25 MiB.
  void set_gradient_bucket_bytes(size_t bytes);
  const GradientBuckets* gradient_buckets() const { return buckets_.get(); }
  GradientBuckets* gradient_buckets() { return buckets_.get(); }

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
  // A batch whose upload was started by an earlier enqueue() (its `next`), in input slot `slot`.
  struct Staged {
    Tensor host_images, host_labels;  // kept alive: identify the batch by storage
    int slot;
  };

  std::unique_ptr<StepGraph> step_;
  Backend& backend_;
  nn::TensorMap values_;
  std::unique_ptr<Optimizer> optimizer_;
  std::unique_ptr<Executor> executor_;
  std::unique_ptr<GradientBuckets> buckets_;  // data parallel only
  Tensor ranks_row_;                          // data parallel: the loss and metrics, summed over the ranks
  std::map<std::string, Tensor> extra_;
  // Off the CPU: two fixed input buffers each (a step reads one while the next batch goes
  // up into the other; fixed addresses keep graph replay to two recordings). The dropout
  // counter, set on the device each step.
  std::array<Tensor, 2> images_, labels_;
  Tensor counter_;
  int last_slot_ = 1;
  std::optional<Staged> staged_;
  // The guard of every update (Backend::sgdw_update) and the launched steps' loss and
  // metrics, one row each, in the backend's memory until collected.
  Tensor guard_;
  Tensor history_;
  int64_t history_rows_ = 0;
  std::vector<int64_t> history_steps_;
  std::vector<StepResult> drained_;
  int64_t step_count_ = 0;
  bool halted_ = false;

  void bind_batch(Feeds& feeds, const Tensor& images, const Tensor& labels);
  void stage(const data::Batch& next);
  void drain_history();
};

}  // namespace agilenn::train
