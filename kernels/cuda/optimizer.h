// The fused multi-tensor optimizer updates of the CUDA backend (optimizer.cu) and their
// CPU twin (optimizer_twin.cpp), which runs the same per-element math (optimizer.cuh) on
// host tensors. Semantics as Backend::sgdw_update / adam_update.
#pragma once

#include <span>

#include "engine/core/error.h"
#include "engine/runtime/backend.h"

namespace agilenn::cuda {

// Device tensors, one dtype (float32 or float64) for the whole call. Work on the compute
// stream: a finiteness pass over every gradient, then one update launch for all parameters
// (which does nothing if the pass found a NaN or an infinity); waits for the 8-byte verdict.
NonFinite sgdw_update(std::span<Tensor> params, std::span<const Tensor> grads, std::span<Tensor> velocities,
                      const SgdwHyper& hyper);
NonFinite adam_update(std::span<Tensor> params, std::span<const Tensor> grads, std::span<Tensor> m,
                      std::span<Tensor> v, const AdamHyper& hyper);

// Host tensors.
NonFinite sgdw_update_twin(std::span<Tensor> params, std::span<const Tensor> grads, std::span<Tensor> velocities,
                           const SgdwHyper& hyper);
NonFinite adam_update_twin(std::span<Tensor> params, std::span<const Tensor> grads, std::span<Tensor> m,
                           std::span<Tensor> v, const AdamHyper& hyper);

}  // namespace agilenn::cuda
