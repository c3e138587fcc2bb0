// A fused program (engine/ir/fused_program.h) on the device: the fused_elementwise kernel
// (elementwise.cu) writes its value at every element, the fused_sum kernel (reductions.cu)
// adds it up by columns. Pointers, strides and instructions travel by value in the
// kernels' arguments, as every launch here does (strided.cuh).
#pragma once

#include <span>

#include "engine/ir/fused_program.h"
#include "kernels/cuda/strided.cuh"
#include "kernels/shared/fused_elementwise.h"

namespace agilenn::cuda {

struct FusedProgramArgs {
  const float* x[kernels::kFusedMaxInputs];
  int inputs, count;
  kernels::FusedInstruction<float> program[kernels::kFusedMaxInstructions];
  StridedIndex<kernels::kFusedMaxInputs> ix;  // the inputs' broadcast strides over the program's shape

  // The program's value at flat index i of its shape, every register in registers.
  __device__ float at(int64_t i) const { return at(i, inputs + count - 1); }
  // Register `reg` at flat index i.
  __device__ float at(int64_t i, int reg) const {
    int64_t o[kernels::kFusedMaxInputs];
    ix.offsets(i, o);
    float r[kernels::kFusedMaxInputs + kernels::kFusedMaxInstructions];
    for (int k = 0; k < inputs; ++k) r[k] = x[k][o[k]];
    for (int j = 0; j < count; ++j) {
      const auto& ins = program[j];
      r[inputs + j] = kernels::apply_fused(ins, r[ins.a], r[ins.b >= 0 ? ins.b : ins.a]);
    }
    return r[reg];
  }
};

// The program of a fused_elementwise or fused_sum node over `shape`, reading `in`.
inline FusedProgramArgs fused_program_args(const Node& node, std::span<const Tensor> in, const Shape& shape) {
  const auto program = fused_program<float>(node.attrs);
  FusedProgramArgs p{};
  p.inputs = static_cast<int>(in.size());
  p.count = static_cast<int>(program.size());
  std::array<std::vector<int64_t>, kernels::kFusedMaxInputs> strides;
  for (size_t k = 0; k < strides.size(); ++k) {
    strides[k].assign(shape.size(), 0);  // unused operands walk nothing
    if (k >= in.size()) continue;
    p.x[k] = in[k].data<float>();
    strides[k] = broadcast_strides(in[k].shape(), shape);
  }
  for (size_t j = 0; j < program.size(); ++j) p.program[j] = program[j];
  p.ix = make_strided_index<kernels::kFusedMaxInputs>(node, shape, strides);
  return p;
}

}  // namespace agilenn::cuda
