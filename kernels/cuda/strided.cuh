// The shared shape of the element-wise, layout and indexing kernels: one grid-stride
// kernel calling a small functor per element, and a strided walk that gives each operand's
// element offset, so broadcasting, transposes, slices, padding and concatenation are one
// walk with different strides. Shapes and pointers travel by value in the kernel's
// arguments (no device allocation or upload), so every launch can be captured into a
// CUDA graph.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "kernels/cuda/cuda_kernels.h"

namespace agilenn::cuda {

constexpr int kMaxRank = 8;

// An iteration shape and, for each of K operands, its element stride along every axis
// (0 along a broadcast axis). Flat index i walks the shape in row-major order.
template <int K>
struct StridedIndex {
  int rank = 0;
  int64_t shape[kMaxRank] = {};
  int64_t strides[K][kMaxRank] = {};

  __host__ __device__ void offsets(int64_t i, int64_t (&off)[K]) const {
    for (int k = 0; k < K; ++k) off[k] = 0;
    // The outermost axis needs no modulo: i < numel bounds its index already.
    for (int d = rank - 1; d > 0; --d) {
      const int64_t idx = i % shape[d];
      i /= shape[d];
      for (int k = 0; k < K; ++k) off[k] += idx * strides[k][d];
    }
    if (rank > 0)
      for (int k = 0; k < K; ++k) off[k] += i * strides[k][0];
  }
};

// Builds the index of `shape`, dropping unit axes and merging neighbours that every
// operand walks contiguously: same-shape operands collapse to one axis, so the common
// case does no division at all. Rank above kMaxRank is an error naming the op.
template <int K>
StridedIndex<K> make_strided_index(const Node& node, const Shape& shape,
                                   const std::array<std::vector<int64_t>, K>& strides) {
  AGILENN_CHECK(shape.size() <= static_cast<size_t>(kMaxRank),
                "op '" << node.op_name() << "': rank " << shape.size() << " exceeds the CUDA backend's limit of "
                       << kMaxRank);
  for (const auto& s : strides)
    AGILENN_CHECK(s.size() == shape.size(), "op '" << node.op_name() << "': " << s.size() << " strides for rank "
                                                   << shape.size());
  StridedIndex<K> ix;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    const int r = ix.rank;
    bool merge = r > 0;
    for (int k = 0; k < K && merge; ++k) merge = strides[k][d] * shape[d] == ix.strides[k][r - 1];
    if (merge) {
      ix.shape[r - 1] *= shape[d];
      for (int k = 0; k < K; ++k) ix.strides[k][r - 1] = strides[k][d];
      continue;
    }
    ix.shape[r] = shape[d];
    for (int k = 0; k < K; ++k) ix.strides[k][r] = strides[k][d];
    ix.rank = r + 1;
  }
  return ix;
}

// Element strides of a tensor of shape `in` read at the indices of `out` (numpy
// broadcasting: axes aligned at the right, 0 where `in` has extent 1 or no axis).
inline std::vector<int64_t> broadcast_strides(const Shape& in, const Shape& out) {
  std::vector<int64_t> s(out.size(), 0);
  const auto dense = contiguous_strides(in);
  const size_t lead = out.size() - in.size();
  for (size_t i = 0; i < in.size(); ++i) s[lead + i] = in[i] == 1 ? 0 : dense[i];
  return s;
}

// f(i) for every i < n, f a functor holding its pointers and sizes by value. Grid-stride,
// so any n fits the capped grid of blocks_for.
template <class F>
__global__ void for_each_kernel(int64_t n, F f) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) f(i);
}

template <class F>
void launch_for_each(int64_t n, const F& f) {
  if (n == 0) return;
  for_each_kernel<F><<<blocks_for(n), kThreads, 0, stream()>>>(n, f);
  AGILENN_CUDA_CHECK_LAUNCH();
}

// f(i, off) with off[k] operand k's element offset at flat index i of ix.
template <int K, class F>
struct StridedApply {
  StridedIndex<K> ix;
  F f;
  __device__ void operator()(int64_t i) const {
    int64_t off[K];
    ix.offsets(i, off);
    f(i, off);
  }
};

template <int K, class F>
void launch_strided(int64_t n, const StridedIndex<K>& ix, const F& f) {
  launch_for_each(n, StridedApply<K, F>{ix, f});
}

}  // namespace agilenn::cuda
