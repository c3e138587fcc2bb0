// CUDA kernels: shared launch helpers and the per-family registration functions. Each
// family is one `<family>.cu` (kernels, then their launchers, then registration).
#pragma once

#include <array>
#include <cstdint>

#include "engine/core/error.h"
#include "engine/runtime/backend.h"
#include "kernels/cuda/context.h"

namespace agilenn::cuda {

// Calls f(float{}) for float32; any other floating dtype is an error naming the op.
template <class F>
void dispatch_f32(DType t, const Node& node, F&& f) {
  AGILENN_CHECK(t == DType::f32, "op '" << node.op_name() << "': the CUDA backend computes float32 only, not "
                                          << dtype_name(t));
  f(float{});
}


void register_elementwise(KernelTable& table);
void register_reductions(KernelTable& table);
void register_layout(KernelTable& table);
void register_conv2d(KernelTable& table);
void register_matmul(KernelTable& table);
void register_indexing(KernelTable& table);
void register_agilenn_fused(KernelTable& table);
void register_cross_entropy(KernelTable& table);

}  // namespace agilenn::cuda
