// Small helpers shared by the test files.
#pragma once

#include <functional>
#include <string>

#include "engine/core/error.h"
#include "engine/runtime/backend.h"

namespace agilenn::testing {

// The message of the agilenn::Error that f throws, or "" when it throws none.
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// The CPU backend under another name, to override one behaviour in a test (a planted
// defect, a GPU-like recording) and keep the rest.
class CpuForwardingBackend : public Backend {
 public:
  std::string name() const override { return "cpu-forwarding"; }
  Device device() const override { return Device::cpu; }
  std::shared_ptr<Storage> allocate(size_t bytes) override { return cpu_backend().allocate(bytes); }
  const KernelTable& kernels() const override { return cpu_backend().kernels(); }
  Tensor to_device(const Tensor& host) override { return cpu_backend().to_device(host); }
  Tensor to_host(const Tensor& t) override { return cpu_backend().to_host(t); }
  Tensor copy(const Tensor& t) override { return cpu_backend().copy(t); }
  void copy_into(const Tensor& src, Tensor& dst) override { cpu_backend().copy_into(src, dst); }
  void sgdw_update(std::span<Tensor> params, std::span<const Tensor> grads, std::span<Tensor> velocities,
                   const SgdwHyper& hyper, const UpdateGuard& guard) override {
    cpu_backend().sgdw_update(params, grads, velocities, hyper, guard);
  }
  void adam_update(std::span<Tensor> params, std::span<const Tensor> grads, std::span<Tensor> m, std::span<Tensor> v,
                   const AdamHyper& hyper, const UpdateGuard& guard) override {
    cpu_backend().adam_update(params, grads, m, v, hyper, guard);
  }
};

}  // namespace agilenn::testing
