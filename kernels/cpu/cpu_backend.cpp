#include <cstring>

#include "kernels/cpu/cpu_kernels.h"

namespace agilenn {
namespace {

class CpuBackend final : public Backend {
 public:
  CpuBackend() {
    threads::count();  // configures the CPU threads, and OpenBLAS, once (engine/runtime/threads.h)
    for (auto add : {cpu::register_elementwise, cpu::register_reductions, cpu::register_layout, cpu::register_conv2d,
                     cpu::register_matmul, cpu::register_indexing, cpu::register_agilenn_fused,
                     cpu::register_cross_entropy, cpu::register_collectives})
      add(table_);
  }
  std::string name() const override { return "cpu"; }
  Device device() const override { return Device::cpu; }
  std::shared_ptr<Storage> allocate(size_t bytes) override { return Storage::allocate_host(bytes); }
  const KernelTable& kernels() const override { return table_; }
  Tensor to_device(const Tensor& host) override { return host; }
  Tensor to_host(const Tensor& t) override { return t; }
  Tensor copy(const Tensor& t) override { return t.clone(); }
  void copy_into(const Tensor& src, Tensor& dst) override { dst.copy_from(src); }
  void sgdw_update(std::span<Tensor> params, std::span<const Tensor> grads, std::span<Tensor> velocities,
                   const SgdwHyper& hyper, const UpdateGuard& guard) override {
    cpu::sgdw_update(params, grads, velocities, hyper, guard);
  }
  void adam_update(std::span<Tensor> params, std::span<const Tensor> grads, std::span<Tensor> m, std::span<Tensor> v,
                   const AdamHyper& hyper, const UpdateGuard& guard) override {
    cpu::adam_update(params, grads, m, v, hyper, guard);
  }

 private:
  KernelTable table_;
};

}  // namespace

Backend& cpu_backend() {
  static CpuBackend backend;
  return backend;
}

namespace cpu {

std::vector<int64_t> broadcast_strides(const Shape& in, const Shape& out) {
  std::vector<int64_t> s(out.size(), 0);
  const auto dense = contiguous_strides(in);
  const size_t lead = out.size() - in.size();
  for (size_t i = 0; i < in.size(); ++i) s[lead + i] = in[i] == 1 ? 0 : dense[i];
  return s;
}

}  // namespace cpu
}  // namespace agilenn
