// The CUDA backend's collectives through NCCL: the all_reduce_sum op on the compute stream
// (in order with the kernels around it, so SyncBN's statistics are ready for the next
// one), and gradient buckets on a stream of their own that overlaps the backward. The
// communicator is made on first use, with the unique id rank 0 broadcasts over MPI.
#include "kernels/cuda/collectives.h"

#include <vector>

#include "engine/dist/communicator.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/cuda_kernels.h"

namespace agilenn::cuda {
namespace {

ncclDataType_t nccl_type(DType t) {
  switch (t) {
    case DType::f32: return ncclFloat32;
    case DType::f64: return ncclFloat64;
    case DType::i32: return ncclInt32;
    default: AGILENN_THROW("NCCL all-reduce: no NCCL type for " << dtype_name(t));
  }
}

struct Nccl {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;          // the gradient buckets' all-reduces
  cudaEvent_t launched = nullptr, done = nullptr;
  bool pending = false;
  Nccl() {
    (void)cuda::stream();  // the device is chosen there (this rank's local GPU)
    dist::Communicator& world = dist::world();
    ncclUniqueId id{};
    if (world.rank() == 0) AGILENN_NCCL_CHECK(ncclGetUniqueId(&id));
    world.broadcast(&id, sizeof id, 0);
    AGILENN_NCCL_CHECK(ncclCommInitRank(&comm, world.size(), id, world.rank()));
    AGILENN_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    AGILENN_CUDA_CHECK(cudaEventCreateWithFlags(&launched, cudaEventDisableTiming));
    AGILENN_CUDA_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
  }
  // Lives until process exit, like the compute stream (NCCL must not be torn down after the driver).
};

Nccl& nccl() {
  static Nccl* n = new Nccl();
  return *n;
}

void check_device_tensor(const Tensor& t) {
  AGILENN_CHECK(t.device() == Device::cuda, "NCCL all-reduce: tensor is in host memory");
}

}  // namespace

void start_all_reduce_sum(Tensor& t) {
  check_device_tensor(t);
  Nccl& n = nccl();
  AGILENN_CUDA_CHECK(cudaEventRecord(n.launched, stream()));
  AGILENN_CUDA_CHECK(cudaStreamWaitEvent(n.stream, n.launched, 0));
  AGILENN_NCCL_CHECK(ncclAllReduce(t.raw(), t.raw(), static_cast<size_t>(t.numel()), nccl_type(t.dtype()), ncclSum,
                                   n.comm, n.stream));
  n.pending = true;
}

void await_collectives() {
  Nccl& n = nccl();
  if (!n.pending) return;
  AGILENN_CUDA_CHECK(cudaEventRecord(n.done, n.stream));
  AGILENN_CUDA_CHECK(cudaStreamWaitEvent(stream(), n.done, 0));
  n.pending = false;
}

void register_collectives(KernelTable& t) {
  t.add("all_reduce_sum", [](const Node&, std::span<const Tensor> in, Tensor& out) {
    check_device_tensor(out);
    AGILENN_CHECK(out.dtype() == DType::f32, "all_reduce_sum on the GPU: float32 only, not " << dtype_name(out.dtype()));
    AGILENN_NCCL_CHECK(ncclAllReduce(in[0].raw(), out.raw(), static_cast<size_t>(out.numel()), ncclFloat32, ncclSum,
                                     nccl().comm, stream()));
  });
}

}  // namespace agilenn::cuda
