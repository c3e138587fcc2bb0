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


// The op families, each registering its kernels (one source file each).
void register_elementwise(KernelTable&), register_reductions(KernelTable&), register_layout(KernelTable&),
    register_conv2d(KernelTable&), register_matmul(KernelTable&), register_indexing(KernelTable&),
    register_agilenn_fused(KernelTable&), register_cross_entropy(KernelTable&), register_collectives(KernelTable&);

}  // namespace agilenn::cuda
