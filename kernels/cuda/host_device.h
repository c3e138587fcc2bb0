// Functions marked AGILENN_HD compile for the GPU under nvcc and as plain C++ elsewhere:
// a hand-written kernel's per-element math lives in one such function, which its CUDA
// kernel and its CPU twin both call.
#pragma once

#ifdef __CUDACC__
#define AGILENN_HD __host__ __device__ __forceinline__
#else
#define AGILENN_HD inline
#endif
