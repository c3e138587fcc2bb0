#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/device.h"

namespace agilenn::cuda {

int device_count(std::string* why_none) {
  int n = 0;
  const cudaError_t status = cudaGetDeviceCount(&n);
  if (status != cudaSuccess) {
    if (why_none) *why_none = std::string("no usable CUDA device: ") + cudaGetErrorString(status);
    (void)cudaGetLastError();  // clear the sticky error left by the failed query
    return 0;
  }
  if (n == 0 && why_none) *why_none = "no CUDA device present";
  return n;
}

DeviceInfo device_info(int index) {
  cudaDeviceProp prop{};
  AGILENN_CUDA_CHECK(cudaGetDeviceProperties(&prop, index));
  DeviceInfo info;
  info.index = index;
  info.name = prop.name;
  info.compute_major = prop.major;
  info.compute_minor = prop.minor;
  info.total_bytes = prop.totalGlobalMem;
  return info;
}

namespace {
void free_device(void* p) { (void)cudaFree(p); }
}  // namespace

std::shared_ptr<Storage> allocate(size_t bytes) {
  void* p = nullptr;
  AGILENN_CUDA_CHECK(cudaMalloc(&p, bytes ? bytes : 1));
  return std::make_shared<Storage>(p, bytes ? bytes : 1, Device::cuda, &free_device);
}

Tensor to_device(const Tensor& host) {
  AGILENN_CHECK(host.device() == Device::cpu, "to_device: tensor is already on the GPU");
  Tensor t(host.shape(), host.dtype(), allocate(host.nbytes()));
  AGILENN_CUDA_CHECK(cudaMemcpy(t.raw(), host.raw(), host.nbytes(), cudaMemcpyHostToDevice));
  return t;
}

Tensor to_host(const Tensor& dev) {
  AGILENN_CHECK(dev.device() == Device::cuda, "to_host: tensor is not on the GPU");
  Tensor t = Tensor::zeros(dev.shape(), dev.dtype());
  AGILENN_CUDA_CHECK(cudaMemcpy(t.raw(), dev.raw(), dev.nbytes(), cudaMemcpyDeviceToHost));
  return t;
}

namespace {
template <class T>
__global__ void set_scalar_kernel(T* p, T value) {
  *p = value;
}
}  // namespace

void set_scalar(Tensor& t, double value) {
  AGILENN_CHECK(t.device() == Device::cuda && t.numel() == 1, "set_scalar: a one-element GPU tensor is needed");
  switch (t.dtype()) {
    case DType::i32: set_scalar_kernel<<<1, 1, 0, stream()>>>(t.data<int32_t>(), static_cast<int32_t>(value)); break;
    case DType::f32: set_scalar_kernel<<<1, 1, 0, stream()>>>(t.data<float>(), static_cast<float>(value)); break;
    case DType::f64: set_scalar_kernel<<<1, 1, 0, stream()>>>(t.data<double>(), value); break;
    default: AGILENN_THROW("set_scalar: " << dtype_name(t.dtype()) << " tensors are not supported");
  }
  AGILENN_CUDA_CHECK_LAUNCH();
}

}  // namespace agilenn::cuda
