// Fused multi-tensor SGDW and Adam. All parameters of an update are described by one
// table in device memory: per tensor its pointers (parameter, gradient, one or two slots)
// and size, and a list of fixed-size chunks (tensor, first element). A block takes one
// chunk, so one launch covers every parameter however many tensors there are and however
// unevenly they are sized.
//
// The table is built on the host in page-locked memory and copied with cudaMemcpyAsync on
// the compute stream ahead of the kernels that read it; it is copied only when it changed
// (same tensors at the same addresses: no copy). Each update is:
//   memset(verdict) → finiteness pass (one launch) → update (one launch, a no-op when the
//   pass found a NaN or an infinity) → 8-byte verdict copied back, stream synchronised.
// The verdict is the smallest (tensor << 40 | element) key of a non-finite gradient
// element, so the report is deterministic: the first in list order, then element order.
#include <algorithm>
#include <climits>
#include <cstring>
#include <mutex>
#include <vector>

#include "kernels/cuda/context.h"
#include "kernels/cuda/optimizer.cuh"
#include "kernels/cuda/optimizer.h"

namespace agilenn::cuda {
namespace {

using Key = unsigned long long;
constexpr Key kAllFinite = ULLONG_MAX;
constexpr int kElementBits = 40;  // key = tensor << 40 | element
constexpr int64_t kChunk = 4096;  // elements per block
constexpr int kUpdateThreads = 256;

struct TensorRef {
  void* param;
  const void* grad;
  void* slot1;
  void* slot2;
  int64_t n;
};
struct ChunkRef {
  int64_t tensor;
  int64_t start;
};

// ---- kernels

template <class T>
__global__ void find_non_finite_kernel(const TensorRef* __restrict__ tensors, const ChunkRef* __restrict__ chunks,
                                       Key* first_bad) {
  const ChunkRef c = chunks[blockIdx.x];
  const TensorRef t = tensors[c.tensor];
  const T* g = static_cast<const T*>(t.grad);
  const int64_t end = c.start + kChunk < t.n ? c.start + kChunk : t.n;
  for (int64_t i = c.start + threadIdx.x; i < end; i += blockDim.x) {
    if (!optim::finite(g[i])) {  // this thread's first is its smallest: one atomic at most
      atomicMin(first_bad, (static_cast<Key>(c.tensor) << kElementBits) | static_cast<Key>(i));
      return;
    }
  }
}

template <class T>
__global__ void sgdw_kernel(const TensorRef* __restrict__ tensors, const ChunkRef* __restrict__ chunks,
                            const Key* first_bad, T lr, T decay, T momentum) {
  if (*first_bad != kAllFinite) return;
  const ChunkRef c = chunks[blockIdx.x];
  const TensorRef t = tensors[c.tensor];
  T* theta = static_cast<T*>(t.param);
  const T* g = static_cast<const T*>(t.grad);
  T* vel = static_cast<T*>(t.slot1);
  const int64_t end = c.start + kChunk < t.n ? c.start + kChunk : t.n;
  for (int64_t i = c.start + threadIdx.x; i < end; i += blockDim.x) optim::sgdw_step(theta[i], vel[i], g[i], lr, decay, momentum);
}

template <class T>
__global__ void adam_kernel(const TensorRef* __restrict__ tensors, const ChunkRef* __restrict__ chunks,
                            const Key* first_bad, T step, T beta1, T beta2, T eps) {
  if (*first_bad != kAllFinite) return;
  const ChunkRef c = chunks[blockIdx.x];
  const TensorRef t = tensors[c.tensor];
  T* theta = static_cast<T*>(t.param);
  const T* g = static_cast<const T*>(t.grad);
  T* m = static_cast<T*>(t.slot1);
  T* v = static_cast<T*>(t.slot2);
  const int64_t end = c.start + kChunk < t.n ? c.start + kChunk : t.n;
  for (int64_t i = c.start + threadIdx.x; i < end; i += blockDim.x)
    optim::adam_step(theta[i], m[i], v[i], g[i], step, beta1, beta2, eps);
}

// ---- the table and its buffers

// Device layout: [verdict: 8 bytes, padded to 16][TensorRef × tensors][ChunkRef × chunks].
constexpr size_t kHeader = 16;

class UpdateTable {
 public:
  struct Operands {
    const TensorRef* tensors;
    const ChunkRef* chunks;
    Key* verdict;
    unsigned chunk_count;
  };

  // Describes the operands on the device (copying the table there if it changed).
  Operands prepare(std::span<Tensor> params, std::span<const Tensor> grads, std::span<Tensor> slot1,
                 std::span<Tensor> slot2) {
    std::vector<TensorRef> refs(params.size());
    std::vector<ChunkRef> chunks;
    for (size_t i = 0; i < params.size(); ++i) {
      const int64_t n = params[i].numel();
      AGILENN_CHECK(n < (int64_t{1} << kElementBits), "optimizer update: tensor " << i << " has " << n << " elements");
      refs[i] = {params[i].raw(), grads[i].raw(), slot1[i].raw(), slot2.empty() ? nullptr : slot2[i].raw(), n};
      for (int64_t start = 0; start < n; start += kChunk) chunks.push_back({static_cast<int64_t>(i), start});
    }
    AGILENN_CHECK(params.size() < (size_t{1} << (64 - kElementBits - 1)) && chunks.size() < (size_t{1} << 31),
                  "optimizer update: too many tensors (" << params.size() << ") or chunks (" << chunks.size() << ")");
    const size_t refs_bytes = refs.size() * sizeof(TensorRef), chunk_bytes = chunks.size() * sizeof(ChunkRef);
    std::vector<unsigned char> bytes(refs_bytes + chunk_bytes);
    if (refs_bytes) std::memcpy(bytes.data(), refs.data(), refs_bytes);
    if (chunk_bytes) std::memcpy(bytes.data() + refs_bytes, chunks.data(), chunk_bytes);

    cudaStream_t s = stream();
    if (!event_) {
      AGILENN_CUDA_CHECK(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming));
      verdict_host_ = allocate_pinned(sizeof(Key));
    }
    if (kHeader + bytes.size() > device_bytes_) {
      // Kernels queued earlier may still read the old table.
      if (device_) {
        AGILENN_CUDA_CHECK(cudaStreamSynchronize(s));
        AGILENN_CUDA_CHECK(cudaFree(device_));
        device_ = nullptr;
        device_bytes_ = 0;
      }
      const size_t want = std::max<size_t>(kHeader + bytes.size() * 2, 4096);
      AGILENN_CUDA_CHECK(cudaMalloc(&device_, want));
      device_bytes_ = want;
      uploaded_.clear();
      have_upload_ = false;
    }
    if (!have_upload_ || bytes != uploaded_) {
      if (!bytes.empty()) {
        // The pinned buffer is reused only once the copy out of it has finished.
        AGILENN_CUDA_CHECK(cudaEventSynchronize(event_));
        if (!pinned_ || pinned_->bytes() < bytes.size()) pinned_ = allocate_pinned(bytes.size() * 2);
        std::memcpy(pinned_->data(), bytes.data(), bytes.size());
        AGILENN_CUDA_CHECK(cudaMemcpyAsync(static_cast<char*>(device_) + kHeader, pinned_->data(), bytes.size(),
                                           cudaMemcpyHostToDevice, s));
        AGILENN_CUDA_CHECK(cudaEventRecord(event_, s));
      }
      uploaded_ = std::move(bytes);
      have_upload_ = true;
    }
    char* base = static_cast<char*>(device_);
    return {reinterpret_cast<const TensorRef*>(base + kHeader),
            reinterpret_cast<const ChunkRef*>(base + kHeader + refs_bytes), reinterpret_cast<Key*>(base),
            static_cast<unsigned>(chunks.size())};
  }

  // Copies the verdict back once the queued kernels are done.
  NonFinite verdict(const Operands& d) {
    Key* host = static_cast<Key*>(verdict_host_->data());
    AGILENN_CUDA_CHECK(cudaMemcpyAsync(host, d.verdict, sizeof(Key), cudaMemcpyDeviceToHost, stream()));
    AGILENN_CUDA_CHECK(cudaStreamSynchronize(stream()));
    if (*host == kAllFinite) return {};
    return {static_cast<int64_t>(*host >> kElementBits), static_cast<int64_t>(*host & ((Key{1} << kElementBits) - 1))};
  }

  std::mutex mu;

 private:
  void* device_ = nullptr;
  size_t device_bytes_ = 0;
  std::shared_ptr<Storage> pinned_, verdict_host_;
  cudaEvent_t event_ = nullptr;
  std::vector<unsigned char> uploaded_;
  bool have_upload_ = false;
};

UpdateTable& table() {
  static UpdateTable* t = new UpdateTable();  // lives until exit, like the stream it uses
  return *t;
}

DType common_dtype(std::span<Tensor> params) {
  const DType t = params.empty() ? DType::f32 : params[0].dtype();
  for (const Tensor& p : params)
    AGILENN_CHECK(p.dtype() == t, "optimizer update on the GPU: parameters mix " << dtype_name(t) << " and "
                                                                                 << dtype_name(p.dtype()));
  return t;
}

// The finiteness pass and `launch_update(grid, table)`, then the verdict.
template <class Launch>
NonFinite run_update(DType dtype, std::span<Tensor> params, std::span<const Tensor> grads, std::span<Tensor> slot1,
                     std::span<Tensor> slot2, Launch&& launch_update) {
  if (params.empty()) return {};
  AGILENN_CHECK(!capturing(), "optimizer update: cannot run while a CUDA graph is captured (it reads a verdict back)");
  UpdateTable& t = table();
  std::lock_guard<std::mutex> lock(t.mu);
  const UpdateTable::Operands d = t.prepare(params, grads, slot1, slot2);
  cudaStream_t s = stream();
  AGILENN_CUDA_CHECK(cudaMemsetAsync(d.verdict, 0xFF, sizeof(Key), s));
  if (d.chunk_count == 0) return t.verdict(d);
  if (dtype == DType::f32) {
    find_non_finite_kernel<float><<<d.chunk_count, kUpdateThreads, 0, s>>>(d.tensors, d.chunks, d.verdict);
  } else {
    find_non_finite_kernel<double><<<d.chunk_count, kUpdateThreads, 0, s>>>(d.tensors, d.chunks, d.verdict);
  }
  AGILENN_CUDA_CHECK_LAUNCH();
  launch_update(d);
  AGILENN_CUDA_CHECK_LAUNCH();
  return t.verdict(d);
}

}  // namespace

// ---- launchers

NonFinite sgdw_update(std::span<Tensor> params, std::span<const Tensor> grads, std::span<Tensor> velocities,
                      const SgdwHyper& h) {
  check_update_operands("SGDW", params, grads, {velocities}, Device::cuda);
  const DType dtype = common_dtype(params);
  auto launch = [&](const UpdateTable::Operands& d) {
    if (dtype == DType::f32) {
      sgdw_kernel<float><<<d.chunk_count, kUpdateThreads, 0, stream()>>>(
          d.tensors, d.chunks, d.verdict, static_cast<float>(h.lr), static_cast<float>(h.decay),
          static_cast<float>(h.momentum));
    } else {
      sgdw_kernel<double><<<d.chunk_count, kUpdateThreads, 0, stream()>>>(d.tensors, d.chunks, d.verdict, h.lr,
                                                                           h.decay, h.momentum);
    }
  };
  return run_update(dtype, params, grads, velocities, {}, launch);
}

NonFinite adam_update(std::span<Tensor> params, std::span<const Tensor> grads, std::span<Tensor> m,
                      std::span<Tensor> v, const AdamHyper& h) {
  check_update_operands("Adam", params, grads, {m, v}, Device::cuda);
  const DType dtype = common_dtype(params);
  auto launch = [&](const UpdateTable::Operands& d) {
    if (dtype == DType::f32) {
      adam_kernel<float><<<d.chunk_count, kUpdateThreads, 0, stream()>>>(
          d.tensors, d.chunks, d.verdict, static_cast<float>(h.step), static_cast<float>(h.beta1),
          static_cast<float>(h.beta2), static_cast<float>(h.eps));
    } else {
      adam_kernel<double><<<d.chunk_count, kUpdateThreads, 0, stream()>>>(d.tensors, d.chunks, d.verdict, h.step,
                                                                           h.beta1, h.beta2, h.eps);
    }
  };
  return run_update(dtype, params, grads, m, v, launch);
}

}  // namespace agilenn::cuda
