// GPU discovery and device memory for tensors.
#pragma once

#include <string>

#include "engine/core/tensor.h"

namespace agilenn::cuda {

struct DeviceInfo {
  int index = 0;
  std::string name;
  int compute_major = 0, compute_minor = 0;
  size_t total_bytes = 0;
};

// Usable GPUs; 0 when there is no driver or no device, with the reason in *why_none.
int device_count(std::string* why_none = nullptr);
DeviceInfo device_info(int index);

// Device storage freed with cudaFree.
std::shared_ptr<Storage> allocate(size_t bytes);
Tensor to_device(const Tensor& host);
Tensor to_host(const Tensor& device_tensor);

// Sets a one-element device tensor (int32, float32 or float64) on the compute stream,
// ordered with the kernels, with no copy from the host.
void set_scalar(Tensor& t, double value);

}  // namespace agilenn::cuda
