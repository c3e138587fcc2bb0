// CPU twin of the fused optimizer kernels: the CPU backend's updates, which run the same
// per-element math (optimizer.cuh) over host tensors with the same guard.
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cuda/optimizer.h"

namespace agilenn::cuda {

void sgdw_update_twin(std::span<Tensor> params, std::span<const Tensor> grads, std::span<Tensor> velocities,
                      const SgdwHyper& h, const UpdateGuard& guard) {
  cpu::sgdw_update(params, grads, velocities, h, guard);
}

void adam_update_twin(std::span<Tensor> params, std::span<const Tensor> grads, std::span<Tensor> m,
                      std::span<Tensor> v, const AdamHyper& h, const UpdateGuard& guard) {
  cpu::adam_update(params, grads, m, v, h, guard);
}

}  // namespace agilenn::cuda
