// The CUDA backend's gradient-bucket all-reduces (NCCL; see collectives.cpp and
// Backend::start_all_reduce_sum).
#pragma once

#include "engine/core/tensor.h"

namespace agilenn::cuda {

// Sums t (device memory) over the ranks in place on the collective stream, after the work
// launched on the compute stream so far.
void start_all_reduce_sum(Tensor& t);
// The compute stream's later work waits for every sum started.
void await_collectives();

}  // namespace agilenn::cuda
