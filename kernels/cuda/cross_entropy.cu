// softmax_cross_entropy: -log_softmax(x)[label] per row, the loss of every classifier,
// float32, with the CPU backend's per-element math (kernels/shared/cross_entropy.h).
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/fault.cuh"
#include "kernels/shared/cross_entropy.h"

namespace agilenn::cuda {
namespace {

using kernels::ce_exp_term;
using kernels::ce_max;
using kernels::rn::add;

// softmax_cross_entropy: one warp per row (grid-stride over rows). The lanes take
// strided classes; xor-butterfly shuffles combine the max (exact in any order) and the
// sum, leaving every lane with the same values; lane 0 writes the loss.
__global__ void softmax_cross_entropy_kernel(const float* x, const int32_t* labels, int64_t rows, int64_t classes,
                                             float* y, FaultSite fault) {
  constexpr unsigned kAll = 0xffffffffu;
  const int lane = static_cast<int>(threadIdx.x) & 31;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x / 32);
  for (int64_t r = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32; r < rows; r += warps) {
    const float* row = x + r * classes;
    float m = -INFINITY;
    for (int64_t j = lane; j < classes; j += 32) m = ce_max(m, row[j]);
    for (int off = 16; off > 0; off /= 2) m = ce_max(m, __shfl_xor_sync(kAll, m, off));
    float s = 0.0f;
    for (int64_t j = lane; j < classes; j += 32) s = add(s, ce_exp_term(row[j], m));
    for (int off = 16; off > 0; off /= 2) s = add(s, __shfl_xor_sync(kAll, s, off));
    if (lane == 0) {
      const int32_t label = labels[r];
      if (kernels::ce_label_ok(label, classes)) {
        y[r] = kernels::ce_loss(row[label], m, s);
      } else {
        y[r] = NAN;
        report_bad_index(fault, r, label, classes);
      }
    }
  }
}

void launch_softmax_cross_entropy(const float* x, const int32_t* labels, int64_t rows, int64_t classes, float* y,
                                  FaultSite fault) {
  if (rows == 0) return;
  softmax_cross_entropy_kernel<<<blocks_for(rows * 32), kThreads, 0, stream()>>>(x, labels, rows, classes, y, fault);
  AGILENN_CUDA_CHECK_LAUNCH();
}

}  // namespace

void register_cross_entropy(KernelTable& table) {
  table.add("softmax_cross_entropy", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    dispatch_f32(out.dtype(), node, [&](float) {
      launch_softmax_cross_entropy(in[0].data<float>(), in[1].data<int32_t>(), in[0].dim(0), in[0].dim(1),
                                   out.data<float>(), fault_site(node));
    });
  });
}

}  // namespace agilenn::cuda
