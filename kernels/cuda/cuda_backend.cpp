#include "kernels/cuda/cuda_backend.h"

#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/device.h"

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
    cuda::register_elementwise(table_);
    cuda::register_reductions(table_);
    cuda::register_layout(table_);
    cuda::register_conv2d(table_);
    cuda::register_matmul(table_);
    cuda::register_indexing(table_);
    cuda::register_agilenn_fused(table_);
  }
  std::string name() const override { return "cuda"; }
  Device device() const override { return Device::cuda; }
  std::shared_ptr<Storage> allocate(size_t bytes) override { return cuda::allocate_cached(bytes); }
  const KernelTable& kernels() const override { return table_; }

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
  KernelTable table_;
};

}  // namespace

Backend& cuda_backend() {
  static CudaBackend backend;
  return backend;
}

}  // namespace agilenn
