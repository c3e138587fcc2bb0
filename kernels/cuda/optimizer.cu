// Fused multi-tensor SGDW and Adam. All tensors of an update are described by one table
// in device memory: per tensor its pointers (parameter, gradient, one or two slots), size
// and role (checked only, updated, or a commit copy), and a list of fixed-size chunks
// (tensor, first element). A block takes one chunk, so one launch covers every tensor
// however many there are and however unevenly they are sized.
//
// The table is built on the host in page-locked memory and copied with cudaMemcpyAsync on
// the compute stream ahead of the kernels that read it; it is copied only when it changed
// (same tensors at the same addresses: no copy). Each update is, on the compute stream and
// with nothing read back:
//   memset(verdict) → finiteness pass over the checked tensors and the gradients (one
//   launch; the smallest (index << 40 | element) of a NaN or an infinity) → the guard
//   judged (one thread: trips it on a non-finite value or a recorded index fault) → the
//   update and the commits (one launch, a no-op while the guard is tripped).
#include <algorithm>
#include <climits>
#include <cstring>
#include <mutex>
#include <type_traits>
#include <vector>

#include "kernels/cuda/context.h"
#include "kernels/cuda/optimizer.h"
#include "kernels/shared/optimizer.h"

namespace agilenn::cuda {
namespace {

namespace optim = kernels::optim;

using Key = unsigned long long;
constexpr Key kAllFinite = ULLONG_MAX;
constexpr int kElementBits = 40;  // key = tensor << 40 | element
constexpr int64_t kChunk = 4096;  // elements per block
constexpr int kUpdateThreads = 256;

enum Role : int32_t { kChecked = 0, kUpdated = 1, kCommitted = 2 };

struct TensorRef {
  void* param;       // kUpdated: the parameter; kCommitted: the destination
  const void* grad;  // kChecked: the tensor checked; kUpdated: the gradient; kCommitted: the source
  void* slot1;
  void* slot2;
  int64_t n;
  int32_t role;
  int32_t unused = 0;  // no padding: the table is compared byte for byte to skip re-uploads
};
struct ChunkRef {
  int64_t tensor;
  int64_t start;
};
static_assert(std::has_unique_object_representations_v<TensorRef> &&
              std::has_unique_object_representations_v<ChunkRef>);

// ---- kernels

template <class T>
__global__ void find_non_finite_kernel(const TensorRef* __restrict__ tensors, const ChunkRef* __restrict__ chunks,
                                       Key* first_bad) {
  const ChunkRef c = chunks[blockIdx.x];
  const TensorRef t = tensors[c.tensor];
  if (t.role == kCommitted) return;
  const T* g = static_cast<const T*>(t.grad);
  const int64_t end = c.start + kChunk < t.n ? c.start + kChunk : t.n;
  for (int64_t i = c.start + threadIdx.x; i < end; i += blockDim.x) {
    if (!optim::finite(g[i])) {  // this thread's first is its smallest: one atomic at most
      atomicMin(first_bad, (static_cast<Key>(c.tensor) << kElementBits) | static_cast<Key>(i));
      return;
    }
  }
}

// One thread. guard = [step, index, element] (float64), step < 0 while untripped.
__global__ void judge_kernel(const Key* verdict, const FaultSlot* fault, double step, double* guard) {
  if (guard[0] >= 0) return;
  const Key v = *verdict;
  if (v != kAllFinite) {
    guard[1] = static_cast<double>(v >> kElementBits);
    guard[2] = static_cast<double>(v & ((Key{1} << kElementBits) - 1));
    guard[0] = step;
  } else if (fault->node != 0) {
    guard[1] = static_cast<double>(kFaultTrip);
    guard[2] = 0;
    guard[0] = step;
  }
}

// The update of a kUpdated chunk, or the copy of a kCommitted one, unless the guard is tripped.
template <class T, class Step>
__device__ void apply_chunk(const TensorRef* __restrict__ tensors, const ChunkRef* __restrict__ chunks,
                            const double* guard, Step&& step) {
  if (guard[0] >= 0) return;
  const ChunkRef c = chunks[blockIdx.x];
  const TensorRef t = tensors[c.tensor];
  const int64_t end = c.start + kChunk < t.n ? c.start + kChunk : t.n;
  if (t.role == kCommitted) {
    T* dst = static_cast<T*>(t.param);
    const T* src = static_cast<const T*>(t.grad);
    for (int64_t i = c.start + threadIdx.x; i < end; i += blockDim.x) dst[i] = src[i];
  } else if (t.role == kUpdated) {
    for (int64_t i = c.start + threadIdx.x; i < end; i += blockDim.x) step(t, i);
  }
}

template <class T>
__global__ void sgdw_kernel(const TensorRef* __restrict__ tensors, const ChunkRef* __restrict__ chunks,
                            const double* guard, T scale, T lr, T decay, T momentum) {
  apply_chunk<T>(tensors, chunks, guard, [&](const TensorRef& t, int64_t i) {
    optim::sgdw_step(static_cast<T*>(t.param)[i], static_cast<T*>(t.slot1)[i], static_cast<const T*>(t.grad)[i], scale,
                     lr, decay, momentum);
  });
}

template <class T>
__global__ void adam_kernel(const TensorRef* __restrict__ tensors, const ChunkRef* __restrict__ chunks,
                            const double* guard, T scale, T step, T beta1, T beta2, T eps) {
  apply_chunk<T>(tensors, chunks, guard, [&](const TensorRef& t, int64_t i) {
    optim::adam_step(static_cast<T*>(t.param)[i], static_cast<T*>(t.slot1)[i], static_cast<T*>(t.slot2)[i],
                     static_cast<const T*>(t.grad)[i], scale, step, beta1, beta2, eps);
  });
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
  Operands prepare(const std::vector<TensorRef>& refs) {
    std::vector<ChunkRef> chunks;
    for (size_t i = 0; i < refs.size(); ++i)
      for (int64_t start = 0; start < refs[i].n; start += kChunk) chunks.push_back({static_cast<int64_t>(i), start});
    AGILENN_CHECK(refs.size() < (size_t{1} << 22) && chunks.size() < (size_t{1} << 31),
                  "optimizer update: too many tensors (" << refs.size() << ") or chunks (" << chunks.size() << ")");
    const size_t refs_bytes = refs.size() * sizeof(TensorRef), chunk_bytes = chunks.size() * sizeof(ChunkRef);
    std::vector<unsigned char> bytes(refs_bytes + chunk_bytes);
    if (refs_bytes) std::memcpy(bytes.data(), refs.data(), refs_bytes);
    if (chunk_bytes) std::memcpy(bytes.data() + refs_bytes, chunks.data(), chunk_bytes);

    cudaStream_t s = stream();
    if (!event_) AGILENN_CUDA_CHECK(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming));
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

  std::mutex mu;

 private:
  void* device_ = nullptr;
  size_t device_bytes_ = 0;
  std::shared_ptr<Storage> pinned_;
  cudaEvent_t event_ = nullptr;
  std::vector<unsigned char> uploaded_;
  bool have_upload_ = false;
};

UpdateTable& table() {
  static UpdateTable* t = new UpdateTable();  // lives until exit, like the stream it uses
  return *t;
}

// One dtype (float32 or float64) for every tensor of the call.
DType common_dtype(std::span<Tensor> params, const UpdateGuard& guard) {
  const DType t = !params.empty() ? params[0].dtype() : !guard.checked.empty() ? guard.checked[0].dtype() : DType::f32;
  auto same = [&](const Tensor& x, const char* what) {
    AGILENN_CHECK(x.dtype() == t, "optimizer update on the GPU: " << what << " is " << dtype_name(x.dtype())
                                                                  << ", the parameters " << dtype_name(t));
  };
  for (const Tensor& p : params) same(p, "a parameter");
  for (const Tensor& c : guard.checked) same(c, "a checked tensor");
  for (const Tensor& c : guard.commit_to) same(c, "a committed tensor");
  return t;
}

// The table: checked tensors, then parameters, then commits (the list indices of
// UpdateGuard: checked first, then the gradients).
std::vector<TensorRef> table_rows(std::span<Tensor> params, std::span<const Tensor> grads, std::span<Tensor> slot1,
                                  std::span<Tensor> slot2, const UpdateGuard& guard) {
  std::vector<TensorRef> refs;
  for (const Tensor& c : guard.checked) refs.push_back({nullptr, c.raw(), nullptr, nullptr, c.numel(), kChecked});
  for (size_t i = 0; i < params.size(); ++i) {
    AGILENN_CHECK(params[i].numel() < (int64_t{1} << kElementBits),
                  "optimizer update: tensor " << i << " has " << params[i].numel() << " elements");
    refs.push_back({params[i].raw(), grads[i].raw(), slot1[i].raw(), slot2.empty() ? nullptr : slot2[i].raw(),
                    params[i].numel(), kUpdated});
  }
  for (size_t i = 0; i < guard.commit_to.size(); ++i)
    refs.push_back({guard.commit_to[i].raw(), guard.commit_from[i].raw(), nullptr, nullptr, guard.commit_to[i].numel(),
                    kCommitted});
  return refs;
}

// The finiteness pass, the guard's judgement, then `launch_update(table)`; nothing read back.
template <class Launch>
void run_update(DType dtype, std::span<Tensor> params, std::span<const Tensor> grads, std::span<Tensor> slot1,
                std::span<Tensor> slot2, const UpdateGuard& guard, Launch&& launch_update) {
  UpdateTable& t = table();
  std::lock_guard<std::mutex> lock(t.mu);
  const UpdateTable::Operands d = t.prepare(table_rows(params, grads, slot1, slot2, guard));
  cudaStream_t s = stream();
  AGILENN_CUDA_CHECK(cudaMemsetAsync(d.verdict, 0xFF, sizeof(Key), s));
  if (d.chunk_count > 0) {
    if (dtype == DType::f32) {
      find_non_finite_kernel<float><<<d.chunk_count, kUpdateThreads, 0, s>>>(d.tensors, d.chunks, d.verdict);
    } else {
      find_non_finite_kernel<double><<<d.chunk_count, kUpdateThreads, 0, s>>>(d.tensors, d.chunks, d.verdict);
    }
    AGILENN_CUDA_CHECK_LAUNCH();
  }
  judge_kernel<<<1, 1, 0, s>>>(d.verdict, fault_slot(), static_cast<double>(guard.step), guard.state.data<double>());
  AGILENN_CUDA_CHECK_LAUNCH();
  if (d.chunk_count == 0) return;
  launch_update(d);
  AGILENN_CUDA_CHECK_LAUNCH();
}

}  // namespace

// ---- launchers

void sgdw_update(std::span<Tensor> params, std::span<const Tensor> grads, std::span<Tensor> velocities,
                 const SgdwHyper& h, const UpdateGuard& guard) {
  check_update_operands("SGDW", params, grads, {velocities}, Device::cuda);
  check_update_guard("SGDW", guard, Device::cuda);
  const DType dtype = common_dtype(params, guard);
  const double* g = guard.state.data<double>();
  run_update(dtype, params, grads, velocities, {}, guard, [&](const UpdateTable::Operands& d) {
    if (dtype == DType::f32) {
      sgdw_kernel<float><<<d.chunk_count, kUpdateThreads, 0, stream()>>>(
          d.tensors, d.chunks, g, static_cast<float>(h.grad_scale), static_cast<float>(h.lr),
          static_cast<float>(h.decay), static_cast<float>(h.momentum));
    } else {
      sgdw_kernel<double><<<d.chunk_count, kUpdateThreads, 0, stream()>>>(d.tensors, d.chunks, g, h.grad_scale, h.lr,
                                                                           h.decay, h.momentum);
    }
  });
}

void adam_update(std::span<Tensor> params, std::span<const Tensor> grads, std::span<Tensor> m, std::span<Tensor> v,
                 const AdamHyper& h, const UpdateGuard& guard) {
  check_update_operands("Adam", params, grads, {m, v}, Device::cuda);
  check_update_guard("Adam", guard, Device::cuda);
  const DType dtype = common_dtype(params, guard);
  const double* g = guard.state.data<double>();
  run_update(dtype, params, grads, m, v, guard, [&](const UpdateTable::Operands& d) {
    if (dtype == DType::f32) {
      adam_kernel<float><<<d.chunk_count, kUpdateThreads, 0, stream()>>>(
          d.tensors, d.chunks, g, static_cast<float>(h.grad_scale), static_cast<float>(h.step),
          static_cast<float>(h.beta1), static_cast<float>(h.beta2), static_cast<float>(h.eps));
    } else {
      adam_kernel<double><<<d.chunk_count, kUpdateThreads, 0, stream()>>>(d.tensors, d.chunks, g, h.grad_scale, h.step,
                                                                           h.beta1, h.beta2, h.eps);
    }
  });
}

}  // namespace agilenn::cuda
