#include "kernels/cuda/cuda_backend.h"

#include <algorithm>
#include <cstring>
#include <deque>

#include "engine/runtime/backend_registry.h"
#include "kernels/cuda/collectives.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/optimizer.h"

namespace agilenn {
namespace {

cudaMemcpyKind copy_kind(Device from, Device to) {
  if (from == Device::cpu) return to == Device::cpu ? cudaMemcpyHostToHost : cudaMemcpyHostToDevice;
  return to == Device::cpu ? cudaMemcpyDeviceToHost : cudaMemcpyDeviceToDevice;
}

class CudaGraphWork final : public RecordedWork {
 public:
  explicit CudaGraphWork(cudaGraphExec_t exec) : exec_(exec) {}
  ~CudaGraphWork() override { (void)cudaGraphExecDestroy(exec_); }
  void replay() override { AGILENN_CUDA_CHECK(cudaGraphLaunch(exec_, cuda::stream())); }

 private:
  cudaGraphExec_t exec_;
};

class CudaBackend final : public Backend {
 public:
  CudaBackend() {
    for (auto add : {cuda::register_elementwise, cuda::register_reductions, cuda::register_layout, cuda::register_conv2d,
                     cuda::register_matmul, cuda::register_indexing, cuda::register_agilenn_fused,
                     cuda::register_cross_entropy, cuda::register_collectives})
      add(table_);
  }
  std::string name() const override { return "cuda"; }
  Device device() const override { return Device::cuda; }
  std::shared_ptr<Storage> allocate(size_t bytes) override { return cuda::allocate_cached(bytes); }
  const KernelTable& kernels() const override { return table_; }

  void start_all_reduce_sum(Tensor& t) override { cuda::start_all_reduce_sum(t); }
  void progress_collectives() override {}  // NCCL progresses on its own
  void await_collectives() override { cuda::await_collectives(); }

  Tensor to_device(const Tensor& host) override {
    AGILENN_CHECK(host.device() == Device::cpu, "to_device: tensor is already on the GPU");
    Tensor t(host.shape(), host.dtype(), allocate(host.nbytes()));
    copy_into(host, t);
    return t;
  }
  Tensor to_host(const Tensor& t) override {
    if (t.device() == Device::cpu) return t;
    Tensor h = Tensor::zeros(t.shape(), t.dtype());
    copy_into(t, h);
    synchronize();
    return h;
  }
  Tensor copy(const Tensor& t) override {
    Tensor c(t.shape(), t.dtype(), allocate(t.nbytes()));
    copy_into(t, c);
    return c;
  }
  void copy_into(const Tensor& src, Tensor& dst) override {
    AGILENN_CHECK(src.shape() == dst.shape() && src.dtype() == dst.dtype(),
                  "copy_into: " << shape_str(src.shape()) << " " << dtype_name(src.dtype()) << " into "
                                << shape_str(dst.shape()) << " " << dtype_name(dst.dtype()));
    if (src.nbytes() == 0) return;
    AGILENN_CUDA_CHECK(cudaMemcpyAsync(dst.raw(), src.raw(), src.nbytes(), copy_kind(src.device(), dst.device()),
                                       cuda::stream()));
    // A copy out of pageable host memory may return before the copy is done; the source
    // must outlive it, so wait here rather than make every caller reason about it.
    if (src.device() == Device::cpu || dst.device() == Device::cpu) synchronize();
  }
  void synchronize() override { AGILENN_CUDA_CHECK(cudaStreamSynchronize(cuda::stream())); }
  std::optional<IndexFault> take_fault() override { return cuda::take_fault(); }
  std::vector<std::string> take_notes() override { return cuda::take_notes(); }
  MemoryUse memory_use() override {
    size_t free = 0, total = 0;
    AGILENN_CUDA_CHECK(cudaMemGetInfo(&free, &total));
    return {cuda::cached_bytes(), total - free};
  }
  void release_cached() override { cuda::release_cached(); }

  // Host memory → a pinned staging buffer (a CPU memcpy) → device memory on the copy
  // stream, which first waits for the work queued on the compute stream so far: the
  // destination comes from the caching allocator, which hands out blocks freed by the host
  // while kernels queued before may still read them. The destination is held here until
  // await_uploads() has ordered the compute stream after the copy, so it cannot go back to
  // the cache (and to a kernel) while the copy still writes it.
  Tensor upload(const Tensor& host) override {
    if (host.device() == Device::cuda) return host;
    Tensor dst(host.shape(), host.dtype(), allocate(host.nbytes()));
    upload_into(host, dst);
    return dst;
  }
  void upload_into(const Tensor& host, Tensor& dst) override {
    AGILENN_CHECK(host.shape() == dst.shape() && host.dtype() == dst.dtype() && dst.device() == Device::cuda,
                  "upload_into: " << shape_str(host.shape()) << " " << dtype_name(host.dtype()) << " into "
                                  << shape_str(dst.shape()) << " " << dtype_name(dst.dtype()) << " in "
                                  << device_name(dst.device()) << " memory");
    if (host.device() == Device::cuda) {
      copy_into(host, dst);
      return;
    }
    if (host.nbytes() == 0) return;
    if (!compute_mark_) {
      AGILENN_CUDA_CHECK(cudaEventCreateWithFlags(&compute_mark_, cudaEventDisableTiming));
      AGILENN_CUDA_CHECK(cudaEventCreateWithFlags(&uploads_done_, cudaEventDisableTiming));
    }
    AGILENN_CUDA_CHECK(cudaEventRecord(compute_mark_, cuda::stream()));
    AGILENN_CUDA_CHECK(cudaStreamWaitEvent(cuda::copy_stream(), compute_mark_, 0));
    Staging& st = staging(host.nbytes());
    std::memcpy(st.memory->data(), host.raw(), host.nbytes());
    AGILENN_CUDA_CHECK(cudaMemcpyAsync(dst.raw(), st.memory->data(), host.nbytes(), cudaMemcpyHostToDevice,
                                       cuda::copy_stream()));
    AGILENN_CUDA_CHECK(cudaEventRecord(st.done, cuda::copy_stream()));
    AGILENN_CUDA_CHECK(cudaEventRecord(uploads_done_, cuda::copy_stream()));
    in_flight_.push_back(dst.storage());
  }
  void set_scalar(Tensor& t, double value) override { cuda::set_scalar(t, value); }
  void await_uploads() override {
    if (in_flight_.empty()) return;
    AGILENN_CUDA_CHECK(cudaStreamWaitEvent(cuda::stream(), uploads_done_, 0));
    in_flight_.clear();
  }

  void sgdw_update(std::span<Tensor> params, std::span<const Tensor> grads, std::span<Tensor> velocities,
                   const SgdwHyper& hyper, const UpdateGuard& guard) override {
    cuda::sgdw_update(params, grads, velocities, hyper, guard);
  }
  void adam_update(std::span<Tensor> params, std::span<const Tensor> grads, std::span<Tensor> m, std::span<Tensor> v,
                   const AdamHyper& hyper, const UpdateGuard& guard) override {
    cuda::adam_update(params, grads, m, v, hyper, guard);
  }

  std::unique_ptr<RecordedWork> record(const std::function<void()>& launches) override {
    cudaStream_t s = cuda::stream();
    AGILENN_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    cudaGraph_t graph = nullptr;
    try {
      launches();
    } catch (...) {
      (void)cudaStreamEndCapture(s, &graph);
      if (graph) (void)cudaGraphDestroy(graph);
      throw;
    }
    AGILENN_CUDA_CHECK(cudaStreamEndCapture(s, &graph));
    cudaGraphExec_t exec = nullptr;
    const cudaError_t status = cudaGraphInstantiate(&exec, graph, 0);
    (void)cudaGraphDestroy(graph);
    AGILENN_CUDA_CHECK(status);
    return std::make_unique<CudaGraphWork>(exec);
  }

 private:
  // A page-locked buffer for uploads; `done` marks the end of the last copy out of it.
  struct Staging {
    std::shared_ptr<Storage> memory;
    cudaEvent_t done = nullptr;
  };
  // A staging buffer of at least `bytes` whose last copy has finished; a new one when all
  // are busy (a few suffice: the uploads of one or two batches are in flight at a time).
  Staging& staging(size_t bytes) {
    constexpr size_t kMaxStaging = 8, kMinStaging = size_t{1} << 20;
    Staging* ready = nullptr;
    for (Staging& st : staging_) {
      const cudaError_t status = cudaEventQuery(st.done);
      if (status == cudaErrorNotReady) continue;
      AGILENN_CUDA_CHECK(status);
      if (st.memory->bytes() >= bytes) return st;  // ready and big enough
      if (!ready) ready = &st;
    }
    // Freeing pinned memory synchronises the device: grow a ready buffer only when every
    // buffer exists already.
    if (ready && staging_.size() >= kMaxStaging) {
      ready->memory = cuda::allocate_pinned(std::max(bytes, kMinStaging));
      return *ready;
    }
    if (staging_.size() >= kMaxStaging) {  // wait for the oldest rather than pin ever more memory
      Staging& st = staging_[next_reuse_++ % staging_.size()];
      AGILENN_CUDA_CHECK(cudaEventSynchronize(st.done));
      if (st.memory->bytes() < bytes) st.memory = cuda::allocate_pinned(std::max(bytes, kMinStaging));
      return st;
    }
    Staging st;
    st.memory = cuda::allocate_pinned(std::max(bytes, kMinStaging));
    AGILENN_CUDA_CHECK(cudaEventCreateWithFlags(&st.done, cudaEventDisableTiming));
    staging_.push_back(std::move(st));
    return staging_.back();
  }

  KernelTable table_;
  // Uploads (Backend::upload): staging buffers, the destinations still being written, and
  // events on the compute stream (before an upload) and the copy stream (after the last).
  std::deque<Staging> staging_;
  size_t next_reuse_ = 0;
  std::vector<std::shared_ptr<Storage>> in_flight_;
  cudaEvent_t compute_mark_ = nullptr, uploads_done_ = nullptr;
};

}  // namespace

Backend& cuda_backend() {
  static CudaBackend backend;
  return backend;
}

namespace {

// "cuda": the first GPU. Kept by linking agilenn_cuda whole (CMakeLists.txt).
const bool kRegistered = [] {
  register_backend({"cuda",
                    [] {
                      std::string why;
                      return cuda::device_count(&why) > 0 ? std::string() : why;
                    },
                    [](const BackendOptions& o, std::string& description) -> Backend& {
                      const cuda::DeviceInfo info = cuda::device_info(0);
                      cuda::set_tf32(o.tf32);
                      cuda::set_nondeterministic_allowed(o.nondeterministic);
                      description = "cuda:0 " + info.name + " (compute capability " +
                                    std::to_string(info.compute_major) + "." + std::to_string(info.compute_minor) +
                                    ")" + (o.tf32 ? ", TF32 on" : "") +
                                    (o.nondeterministic ? ", non-deterministic cuDNN allowed" : "");
                      return cuda_backend();
                    }});
  return true;
}();

}  // namespace

}  // namespace agilenn
