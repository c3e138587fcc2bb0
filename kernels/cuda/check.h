// Every CUDA runtime, cuBLAS, cuDNN and NCCL call goes through a check macro: a failure throws an
// Error naming the call, the file and the line. Kernel launches are followed by
// AGILENN_CUDA_CHECK_LAUNCH(), which reports launch-configuration errors the same way.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <nccl.h>

#include "engine/core/error.h"

#define AGILENN_CUDA_CHECK(call)                                                                  \
  do {                                                                                            \
    const cudaError_t agilenn_status_ = (call);                                                   \
    if (agilenn_status_ != cudaSuccess)                                                           \
      AGILENN_THROW(__FILE__ << ":" << __LINE__ << ": " << #call << " failed: "                  \
                             << cudaGetErrorName(agilenn_status_) << " ("                         \
                             << cudaGetErrorString(agilenn_status_) << ")");                      \
  } while (0)

#define AGILENN_CUBLAS_CHECK(call)                                                                \
  do {                                                                                            \
    const cublasStatus_t agilenn_status_ = (call);                                                \
    if (agilenn_status_ != CUBLAS_STATUS_SUCCESS)                                                 \
      AGILENN_THROW(__FILE__ << ":" << __LINE__ << ": " << #call << " failed: "                  \
                             << cublasGetStatusName(agilenn_status_) << " ("                      \
                             << cublasGetStatusString(agilenn_status_) << ")");                   \
  } while (0)

#define AGILENN_CUDNN_CHECK(call)                                                                 \
  do {                                                                                            \
    const cudnnStatus_t agilenn_status_ = (call);                                                 \
    if (agilenn_status_ != CUDNN_STATUS_SUCCESS)                                                  \
      AGILENN_THROW(__FILE__ << ":" << __LINE__ << ": " << #call << " failed: "                  \
                             << cudnnGetErrorString(agilenn_status_));                            \
  } while (0)

#define AGILENN_NCCL_CHECK(call)                                                                  \
  do {                                                                                            \
    const ncclResult_t agilenn_status_ = (call);                                                  \
    if (agilenn_status_ != ncclSuccess)                                                           \
      AGILENN_THROW(__FILE__ << ":" << __LINE__ << ": " << #call << " failed: "                  \
                             << ncclGetErrorString(agilenn_status_));                             \
  } while (0)

#define AGILENN_CUDA_CHECK_LAUNCH() AGILENN_CUDA_CHECK(cudaGetLastError())
