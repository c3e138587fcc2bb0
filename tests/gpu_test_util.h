// Shared by the GPU test files (label gpu).
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "kernels/cuda/device.h"

// Ends the current test as skipped, printing why, when no usable CUDA device is present.
#define AGILENN_SKIP_WITHOUT_GPU()                                                       \
  do {                                                                                   \
    std::string agilenn_no_gpu_reason;                                                   \
    if (::agilenn::cuda::device_count(&agilenn_no_gpu_reason) == 0)                      \
      GTEST_SKIP() << agilenn_no_gpu_reason;                                             \
  } while (0)
