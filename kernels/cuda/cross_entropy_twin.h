// CPU twin of the softmax_cross_entropy CUDA kernel: a plain loop over the same
// per-element functions (cross_entropy.cuh), on host pointers.
#pragma once

#include <cstdint>

namespace agilenn::cuda {

// x [rows, classes], labels [rows] → y [rows] = -log_softmax(x)[label] (NaN for a label
// outside [0, classes), as the kernel).
void softmax_cross_entropy_twin(const float* x, const int32_t* labels, int64_t rows, int64_t classes, float* y);

}  // namespace agilenn::cuda
