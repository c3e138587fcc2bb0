// GPU discovery and device memory; skipped with the reason when no GPU is present.
#include <gtest/gtest.h>

#include <algorithm>

#include "engine/core/error.h"
#include "engine/runtime/backend_registry.h"
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

// The CUDA archive is linked whole, so its backend registers itself; without a GPU,
// opening it names the reason.
TEST(CudaBackendRegistry, CudaIsRegisteredInACudaBuild) {
  const std::vector<std::string> names = backend_names();
  EXPECT_NE(std::find(names.begin(), names.end(), "cuda"), names.end());
  std::string why;
  if (cuda::device_count(&why) == 0) {
    try {
      open_backend("cuda");
      ADD_FAILURE() << "opening cuda without a GPU did not throw";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("cannot run here"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace agilenn
