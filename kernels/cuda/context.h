// The CUDA backend's per-process state: the stream every kernel runs on, the cuBLAS and
// cuDNN handles bound to it, library workspace, and the caching allocator. Nothing here
// touches the GPU until first used, so a backend can be built (and its kernel table
// inspected) on a machine without one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/core/tensor.h"
#include "engine/runtime/backend.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/fault.cuh"

namespace agilenn::cuda {

// The compute stream of the backend (created on first use, non-blocking).
cudaStream_t stream();
// A second stream for host-to-device uploads that overlap the compute stream.
cudaStream_t copy_stream();
cublasHandle_t cublas();
cudnnHandle_t cudnn();

// Scratch device memory of at least `bytes` for library calls on the compute stream.
// It only grows; growing while the stream is being captured into a CUDA graph is an
// error (run the step once before capturing, so it reaches its final size).
void* workspace(size_t bytes);

// TF32 tensor-core math for float32 GEMMs and convolutions: off unless asked for.
void set_tf32(bool on);
bool tf32();

// Non-deterministic library algorithms (cuDNN's atomics-based convolution gradients):
// refused unless allowed here; each one chosen is reported through note().
void set_nondeterministic_allowed(bool on);
bool nondeterministic_allowed();
// How many of the convolution algorithms chosen so far are non-deterministic (conv2d.cu).
size_t nondeterministic_convolutions();

// Things a run's log should show (e.g. a non-deterministic algorithm chosen), collected
// until taken (Backend::take_notes).
void note(const std::string& message);
std::vector<std::string> take_notes();

// True while the compute stream is recording a CUDA graph.
bool capturing();

// Device memory from a caching allocator: freed blocks are kept, by size class, for
// reuse instead of going back to cudaFree (which synchronises the device).
std::shared_ptr<Storage> allocate_cached(size_t bytes);
// Bytes held by the caching allocator (in use and cached), and returns the cached
// blocks to the driver.
size_t cached_bytes();
void release_cached();

// The device's index-fault slot (fault.cuh), and where kernels launched for `node` report.
const FaultSlot* fault_slot();
FaultSite fault_site(const Node& node);
// The fault recorded since the last call, if any (waits for the compute stream), cleared.
std::optional<IndexFault> take_fault();

// Page-locked host memory: uploads from it run asynchronously on copy_stream().
std::shared_ptr<Storage> allocate_pinned(size_t bytes);

// Launch geometry for one thread per element.
constexpr int kThreads = 256;
inline unsigned blocks_for(int64_t n, int threads = kThreads) {
  const int64_t b = (n + threads - 1) / threads;
  return static_cast<unsigned>(b < 1 ? 1 : (b > (1 << 30) ? (1 << 30) : b));
}

}  // namespace agilenn::cuda
