// The fused multi-tensor optimizer updates of the CUDA backend (optimizer.cu), with the
// CPU backend's per-element math (kernels/shared/optimizer.h). Semantics as
// Backend::sgdw_update / adam_update.
#pragma once

#include <span>

#include "engine/core/error.h"
#include "engine/runtime/backend.h"

namespace agilenn::cuda {

// Device tensors, one dtype (float32 or float64) for the whole call. Work on the compute
// stream: a finiteness pass over the checked tensors and every gradient, the guard judged,
// then one launch for all parameters and commits (which does nothing once the guard is
// tripped). Nothing is read back.
void sgdw_update(std::span<Tensor> params, std::span<const Tensor> grads, std::span<Tensor> velocities,
                 const SgdwHyper& hyper, const UpdateGuard& guard);
void adam_update(std::span<Tensor> params, std::span<const Tensor> grads, std::span<Tensor> m, std::span<Tensor> v,
                 const AdamHyper& hyper, const UpdateGuard& guard);

}  // namespace agilenn::cuda
