// GPU discovery and device memory; skipped with the reason when no GPU is present.
#include <gtest/gtest.h>

#include "kernels/cuda/device.h"
#include "tests/gpu_test_util.h"

namespace agilenn {
namespace {

TEST(GpuDevice, TensorRoundTripsThroughDeviceMemory) {
  AGILENN_SKIP_WITHOUT_GPU();
  const cuda::DeviceInfo info = cuda::device_info(0);
  EXPECT_FALSE(info.name.empty());
  EXPECT_GE(info.compute_major, 7);
  Tensor host = Tensor::zeros({3, 7, 5}, DType::f32);
  for (int64_t i = 0; i < host.numel(); ++i) host.set_item(i, 0.5 * static_cast<double>(i) - 3.0);
  Tensor dev = cuda::to_device(host);
  EXPECT_EQ(dev.device(), Device::cuda);
  EXPECT_EQ(cuda::to_host(dev).to_vector(), host.to_vector());
}

}  // namespace
}  // namespace agilenn
