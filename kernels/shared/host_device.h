// kernels/shared holds the per-element math of the hand-written kernels: functions marked
// AGILENN_HD compile for the GPU under nvcc and as plain C++ elsewhere, and the CPU
// backend (kernels/cpu) and the CUDA kernels (kernels/cuda) both call them. So a CUDA
// kernel's CPU twin is the CPU backend's kernel for the same op, and runs in every build.
// Headers here include nothing from kernels/cpu or kernels/cuda.
#pragma once

#ifdef __CUDACC__
#define AGILENN_HD __host__ __device__ __forceinline__
#else
#define AGILENN_HD inline
#endif
