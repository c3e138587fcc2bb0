// The CUDA backend: every registry op in float32 on one GPU (integer and mask dtypes where
// the op defines them). Building it does not touch the GPU; the first kernel does.
#pragma once

#include "engine/runtime/backend.h"

namespace agilenn {

Backend& cuda_backend();

}  // namespace agilenn
