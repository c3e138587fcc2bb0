// The CUDA backend's NCCL path in a world of one rank, the most one GPU allows: the
// communicator made from a broadcast unique id, a gradient bucket's all-reduce on the
// collective stream ordered between the compute stream's work before and after it. (The
// all_reduce_sum op, on the compute stream, is in OpParity with every op.) Skipped without
// a GPU.
#include <gtest/gtest.h>

#include "engine/ir/ops.h"
#include "engine/runtime/backend_registry.h"
#include "engine/runtime/executor.h"
#include "kernels/cuda/device.h"
#include "tests/gpu_test_util.h"
#include "tests/test_util.h"

namespace agilenn {
namespace {

TEST(CudaCollectives, ABucketSummedOverOneRankIsOrderedBetweenTheKernelsAroundIt) {
  AGILENN_SKIP_WITHOUT_GPU();
  Backend& gpu = open_backend("cuda");
  // The bucket is written by a kernel (x · 2), summed, then read by another (· 3): the sum
  // must start after the first and the second must wait for it.
  Graph g;
  Value x = ops::leaf(g, "x", {4099}, DType::f32);
  Value doubled = x * 2.0;
  const Tensor host = testing::random_tensor({4099}, DType::f32, 3);
  Tensor bucket = evaluate(g, {doubled.id()}, {{"x", host}}, gpu)[0];
  gpu.start_all_reduce_sum(bucket);
  gpu.await_collectives();
  Graph h;
  Value y = ops::leaf(h, "y", {4099}, DType::f32);
  Value tripled = y * 3.0;
  const Tensor out = gpu.to_host(evaluate(h, {tripled.id()}, {{"y", bucket}}, gpu)[0]);
  for (int64_t i = 0; i < host.numel(); ++i)
    ASSERT_EQ(out.item(i), static_cast<double>(static_cast<float>(static_cast<float>(host.item(i) * 2) * 3))) << i;
}

}  // namespace
}  // namespace agilenn
