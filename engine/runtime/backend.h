// A backend is a table of kernels plus `supports(op)`, and the memory they run on.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>

#include "engine/core/tensor.h"
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
  // Waits until every launched kernel has finished.
  virtual void synchronize() {}
  // Records the kernels `launches` starts, without running them, for replay; nullptr
  // where the backend cannot record (the CPU runs kernels as they are called).
  virtual std::unique_ptr<RecordedWork> record(const std::function<void()>& launches) {
    (void)launches;
    return nullptr;
  }

  bool supports(const std::string& op) const { return kernels().find(op) != nullptr; }
  void run(const Node& node, std::span<const Tensor> inputs, Tensor& out) const;
};

// The reference backend: every registry op in float32 and float64.
Backend& cpu_backend();

}  // namespace agilenn
