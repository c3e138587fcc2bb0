// Every CUDA runtime call goes through AGILENN_CUDA_CHECK: a failure throws an Error
// naming the call, the file and the line.
#pragma once

#include <cuda_runtime.h>

#include "engine/core/error.h"

#define AGILENN_CUDA_CHECK(call)                                                                  \
  do {                                                                                            \
    const cudaError_t agilenn_status_ = (call);                                                   \
    if (agilenn_status_ != cudaSuccess)                                                           \
      AGILENN_THROW(__FILE__ << ":" << __LINE__ << ": " << #call << " failed: "                  \
                             << cudaGetErrorName(agilenn_status_) << " ("                         \
                             << cudaGetErrorString(agilenn_status_) << ")");                      \
  } while (0)
