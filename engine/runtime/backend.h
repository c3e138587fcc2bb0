// A backend is a table of kernels plus `supports(op)`, and the memory they run on.
#pragma once

#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "engine/core/tensor.h"
#include "engine/dist/communicator.h"
#include "engine/ir/graph.h"

namespace agilenn {

// Work recorded once and replayed as a whole (a CUDA graph on the GPU).
class RecordedWork {
 public:
  virtual ~RecordedWork() = default;
  virtual void replay() = 0;
};

// Computes `out` (already allocated, node.shape / node.dtype) from `inputs`.
using Kernel = std::function<void(const Node& node, std::span<const Tensor> inputs, Tensor& out)>;

class KernelTable {
 public:
  void add(const std::string& op, Kernel kernel);
  const Kernel* find(const std::string& op) const;
  std::vector<std::string> ops() const;

 private:
  std::map<std::string, Kernel> kernels_;
};

// Hyperparameters of one multi-tensor optimizer update, computed on the host for the step.
// SGDW (decoupled):  θ ← θ − decay·θ;  v ← momentum·v − lr·g;  θ ← θ + v.
// Both read g as grad_scale · (the gradient given): 1/N turns the sum of N ranks'
// gradients into their mean inside the update, with no pass of its own.
struct SgdwHyper {
  double lr = 0;        // lr(t)
  double decay = 0;     // wd(t) = weight_decay · lr(t)
  double momentum = 0;  // μ
  double grad_scale = 1;
};
// Adam:  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;  θ ← θ − step·m / (√v + eps).
struct AdamHyper {
  double step = 0;  // lr(t) · √(1 − β2^t) / (1 − β1^t): the bias corrections, folded in on the host
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-7;
  double grad_scale = 1;
};
// What guards a multi-tensor update, and what it also commits. `state` is the guard of a
// training run: float64 [3] in the backend's memory (new_update_guard; integers, exact
// below 2^53), [-1, 0, 0] while every update so far was applied. An update that finds the
// guard tripped changes nothing. One that finds a NaN or an infinity in `checked` (e.g.
// the loss: checked, never written) or in a gradient, or (on the GPU) an index fault
// recorded and not yet taken (Backend::take_fault), trips it with [step, list index, element] and changes
// nothing. Otherwise it updates the parameters and copies commit_from[i] into
// commit_to[i] (the step's state updates), all in the same launch. List indices count
// `checked` first, then the gradients; kFaultTrip marks an index fault.
struct UpdateGuard {
  Tensor state;
  int64_t step = 0;
  std::span<const Tensor> checked;
  std::span<const Tensor> commit_from;
  std::span<Tensor> commit_to;
};

// A guard's state read back: the step whose update was refused and why; step < 0: none.
struct GuardTrip {
  int64_t step = -1, tensor = -1, element = -1;
  bool tripped() const { return step >= 0; }
};
constexpr int64_t kFaultTrip = (int64_t{1} << 22) - 1;

// An index outside [0, bound) met by a kernel that cannot throw where it runs (a GPU
// kernel): the first such node in launch order, the smallest bad position in its index
// tensor and the index found there.
struct IndexFault {
  const Node* node = nullptr;
  NodeId node_id = kNoNode;
  int64_t position = 0, value = 0, bound = 0;
};

// The error text for an index or label outside [0, bound), the same on every backend:
// "op 'gather': index 12 at position 3 is outside [0, 10)" (labels of the cross-entropy
// ops: "label 12 of row 3").
std::string index_fault_message(const std::string& op, int64_t value, int64_t position, int64_t bound);

// Checks the operands of a multi-tensor update named `update`: one gradient and one tensor
// of each slot list per parameter, of the parameter's shape and dtype, floating, on `device`.
void check_update_operands(const char* update, std::span<const Tensor> params, std::span<const Tensor> grads,
                           std::initializer_list<std::span<const Tensor>> slots, Device device);
// And its guard: the state tensor, the checked tensors, the commits' pairs.
void check_update_guard(const char* update, const UpdateGuard& guard, Device device);

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual Device device() const = 0;
  virtual std::shared_ptr<Storage> allocate(size_t bytes) = 0;
  virtual const KernelTable& kernels() const = 0;
  // Uploads a host tensor to this backend's memory (a no-op on the CPU) and back.
  virtual Tensor to_device(const Tensor& host) = 0;
  virtual Tensor to_host(const Tensor& t) = 0;
  // A copy in fresh memory of this backend.
  virtual Tensor copy(const Tensor& t) = 0;
  // Copies src into dst (same shape and dtype; each on the host or on this backend),
  // ordered after the work launched so far.
  virtual void copy_into(const Tensor& src, Tensor& dst) = 0;
  // Starts copying a host tensor into this backend's memory without waiting for the copy
  // (on CUDA: staged through pinned memory on a copy stream, so it overlaps the kernels
  // running meanwhile). Work may read the result only once it is launched after
  // await_uploads(). A tensor already in this backend's memory is returned as it is.
  virtual Tensor upload(const Tensor& host) { return host.device() == device() ? host : to_device(host); }
  // As upload(), into `dst` (this backend's memory, the host tensor's shape and dtype); a
  // source already in this backend's memory is copied.
  virtual void upload_into(const Tensor& host, Tensor& dst) { copy_into(host, dst); }
  // Orders all work launched from now on after every upload started so far.
  virtual void await_uploads() {}
  // Sets a one-element tensor in this backend's memory, ordered with the work launched so
  // far and without waiting (the dropout counter of each step).
  virtual void set_scalar(Tensor& t, double value) { copy_into(Tensor::scalar(value, t.dtype()), t); }

  // Multi-tensor optimizer updates, in place, of params[i] with grads[i] and the slots
  // (momenta) of the same index, guarded and committing as `guard` says; every tensor in
  // this backend's memory. Nothing is read back to the host (see read_guard).
  virtual void sgdw_update(std::span<Tensor> params, std::span<const Tensor> grads, std::span<Tensor> velocities,
                           const SgdwHyper& hyper, const UpdateGuard& guard);
  virtual void adam_update(std::span<Tensor> params, std::span<const Tensor> grads, std::span<Tensor> m,
                           std::span<Tensor> v, const AdamHyper& hyper, const UpdateGuard& guard);

  // Gradient buckets of data-parallel training: sums `t` (this backend's memory) over the
  // ranks of dist::world() in place, started after the work launched so far without
  // waiting for it to finish (MPI_Iallreduce on the CPU; NCCL on a stream of its own on
  // the GPU). progress_collectives() lets started sums advance (MPI moves a non-blocking
  // collective only inside its calls); await_collectives() orders the work launched after
  // it after every sum started (on the CPU: waits for them). `t` must stay alive and
  // untouched until then.
  virtual void start_all_reduce_sum(Tensor& t);
  virtual void progress_collectives();
  virtual void await_collectives();

  // Waits until every launched kernel has finished.
  virtual void synchronize() {}
  // The index fault recorded by kernels launched so far, if any, and clears it (waits for
  // those kernels). Backends whose kernels throw at once (the CPU's) never record one.
  virtual std::optional<IndexFault> take_fault() { return std::nullopt; }
  // Things a run's log should show that came up since the last call (e.g. a
  // non-deterministic library algorithm chosen), cleared by taking them.
  virtual std::vector<std::string> take_notes() { return {}; }
  // Records the kernels `launches` starts, without running them, for replay; nullptr
  // where the backend cannot record (the CPU runs kernels as they are called).
  virtual std::unique_ptr<RecordedWork> record(const std::function<void()>& launches) {
    (void)launches;
    return nullptr;
  }

  // Device memory, for reports: what this backend's caching allocator holds, and what is in
  // use on the device (by every process). Zeros on backends that do not track it (the CPU).
  struct MemoryUse {
    size_t held_bytes = 0, device_used_bytes = 0;
  };
  virtual MemoryUse memory_use() { return {}; }
  // Hands the allocator's idle cached blocks back to the device.
  virtual void release_cached() {}

  bool supports(const std::string& op) const { return kernels().find(op) != nullptr; }
  void run(const Node& node, std::span<const Tensor> inputs, Tensor& out) const;

 private:
  std::vector<std::unique_ptr<dist::PendingReduction>> pending_;  // the host-memory sums started
};

// The reference backend: every registry op in float32 and float64.
Backend& cpu_backend();

// An untripped update guard in the backend's memory, and its state read back (waits for
// the work launched so far).
Tensor new_update_guard(Backend& backend);
GuardTrip read_guard(Backend& backend, const Tensor& guard);

}  // namespace agilenn
