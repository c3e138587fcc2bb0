// The CUDA depthwise kernels against their twin (tests/test_depthwise_twin.cpp holds the
// twin against the CPU backend), and the CUDA backend's conv2d family (depthwise kernels
// and cuDNN, including asymmetric "same" padding) against the CPU backend. Each test
// skips with the reason when there is no GPU.
#include <gtest/gtest.h>

#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/depthwise_conv2d.h"
#include "kernels/cuda/device.h"
#include "tests/depthwise_cases.h"
#include "tests/gpu_test_util.h"

namespace agilenn::testing {
namespace {

// The CUDA kernels run the twin's math in the twin's order; they differ only where nvcc
// fuses a multiply-add, a rounding step per product.
constexpr double kRtolGpuVsTwin = 2e-5;

TEST(CudaDepthwiseKernels, MatchTheTwin) {
  AGILENN_SKIP_WITHOUT_GPU();
  Backend& gpu = cuda_backend();
  for (size_t i = 0; i < depthwise_cases().size(); ++i) {
    const ConvCase& k = depthwise_cases()[i];
    ConvGraph cg;
    build(cg, k);
    const kernels::DepthwiseGeometry g = geometry(cg);
    const Feeds feeds = random_feeds(cg, 3000 + i);
    const auto twin = run_twin(cg, feeds);
    const Tensor x = gpu.to_device(feeds.at("x")), w = gpu.to_device(feeds.at("w")), gy = gpu.to_device(feeds.at("gy"));
    Tensor y = gpu.to_device(Tensor::zeros(cg.y.shape(), DType::f32));
    Tensor dx = gpu.to_device(Tensor::zeros(cg.x.shape(), DType::f32));
    Tensor dw = gpu.to_device(Tensor::zeros(cg.w.shape(), DType::f32));
    cuda::depthwise_conv2d_forward(g, x.data<float>(), w.data<float>(), y.data<float>());
    cuda::depthwise_conv2d_backward_input(g, gy.data<float>(), w.data<float>(), dx.data<float>());
    cuda::depthwise_conv2d_backward_filter(g, x.data<float>(), gy.data<float>(), dw.data<float>());
    gpu.synchronize();
    const Tensor got[3] = {gpu.to_host(y), gpu.to_host(dx), gpu.to_host(dw)};
    for (size_t o = 0; o < 3; ++o)
      EXPECT_LE(tensor_error(twin[o], got[o], kRtolGpuVsTwin), 1.0) << kOutputNames[o] << ", " << describe(k);
  }
}

// The filter gradient's reduction plan is fixed by the geometry: two runs are bit-equal.
TEST(CudaDepthwiseKernels, FilterGradientIsDeterministic) {
  AGILENN_SKIP_WITHOUT_GPU();
  Backend& gpu = cuda_backend();
  const ConvCase& k = depthwise_cases()[12];
  ConvGraph cg;
  build(cg, k);
  const kernels::DepthwiseGeometry g = geometry(cg);
  ASSERT_GE(kernels::depthwise_filter_chunks(g), 2);
  const Feeds feeds = random_feeds(cg, 4000);
  const Tensor x = gpu.to_device(feeds.at("x")), gy = gpu.to_device(feeds.at("gy"));
  Tensor a = gpu.to_device(Tensor::zeros(cg.w.shape(), DType::f32));
  Tensor b = gpu.to_device(Tensor::zeros(cg.w.shape(), DType::f32));
  cuda::depthwise_conv2d_backward_filter(g, x.data<float>(), gy.data<float>(), a.data<float>());
  cuda::depthwise_conv2d_backward_filter(g, x.data<float>(), gy.data<float>(), b.data<float>());
  gpu.synchronize();
  EXPECT_EQ(gpu.to_host(a).to_vector(), gpu.to_host(b).to_vector());
}

// The registered conv2d kernels of the CUDA backend (depthwise dispatch and cuDNN, with the
// filter transposes and the padding plan) against the CPU backend.
void expect_backend_parity(const std::vector<ConvCase>& cases, uint64_t seed) {
  for (size_t i = 0; i < cases.size(); ++i) {
    const ConvCase& k = cases[i];
    ConvGraph cg;
    build(cg, k);
    const Feeds feeds = random_feeds(cg, seed + i);
    const std::vector<NodeId> outs{cg.y.id(), cg.dx.id(), cg.dw.id()};
    const auto cpu = evaluate(cg.g, outs, feeds, cpu_backend());
    const auto gpu = evaluate(cg.g, outs, feeds, cuda_backend());
    for (size_t o = 0; o < 3; ++o)
      EXPECT_LE(tensor_error(cpu[o], cuda_backend().to_host(gpu[o]), o == 2 ? kRtolFilter : kRtolWindow * 5), 1.0)
          << kOutputNames[o] << ", " << describe(k);
  }
}

TEST(CudaDepthwiseBackend, Conv2dFamilyMatchesTheCpuBackend) {
  AGILENN_SKIP_WITHOUT_GPU();
  expect_backend_parity(depthwise_cases(), 5000);
}

TEST(CudaConv2dCudnn, DenseAndGroupedMatchTheCpuBackend) {
  AGILENN_SKIP_WITHOUT_GPU();
  expect_backend_parity(cudnn_cases(), 6000);
}

}  // namespace
}  // namespace agilenn::testing
