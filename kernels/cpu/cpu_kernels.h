// CPU reference kernels: shared helpers and the per-family registration functions.
#pragma once


#include <algorithm>
#include <array>
#include <cstdint>
#include <utility>
#include <vector>

#include "engine/core/error.h"
#include "engine/runtime/backend.h"
#include "engine/runtime/threads.h"

namespace agilenn::cpu {

// A hot loop compiled twice, for the x86-64 baseline (SSE2) and for AVX2, the loader
// choosing by what the CPU has: AVX2 does twice the elements per vector instruction. The
// clones do the same IEEE operations in the same order (no fused multiply-adds: the build
// forbids contraction and FMA is not part of "avx2"), so their results are equal bit for
// bit. `flatten` inlines everything the loop calls, so that code is cloned with it. Clang
// refuses target_clones with flatten; its one build here, the fuzz gate's, gets the
// baseline copy alone.
#ifdef __clang__
#define AGILENN_CPU_CLONES
#else
#define AGILENN_CPU_CLONES [[gnu::flatten, gnu::target_clones("avx2", "default")]]
#endif

// Below this much work (elements touched) a loop runs on the calling thread: handing it
// to other threads costs more than it saves.
constexpr int64_t kParallelGrain = 1 << 15;

// A parallel loop is cut into pieces of at least kChunkWork, and at most
// kChunksPerThread per thread: more pieces than threads, claimed one at a time, so a
// thread that shares its core with another process (or has not woken yet) holds a loop
// up by one piece at most (engine/runtime/threads.h).
constexpr int64_t kChunkWork = 1 << 13;
constexpr int64_t kChunksPerThread = 8;

// Sums over many rows run in this many fixed blocks of rows (fewer when there are fewer
// rows), each summed in order, then the blocks in order: the result does not depend on
// the thread count, and a fused kernel whose sum must equal a decomposition's bit for bit
// (quantize_backward's) blocks its rows the same way.
constexpr int64_t kRowBlocks = 16;

// Calls body(begin, end) over contiguous pieces of [0, n) that together cover it once,
// on the engine's threads when `work` exceeds kParallelGrain. The pieces depend only on
// n, work and the thread count, but which thread runs which piece, and in what order,
// varies: a body may write only its own iterations' outputs (a reduction sums fixed
// blocks and combines them in order afterwards).
template <class F>
void parallel_for(int64_t n, int64_t work, const F& body) {
  if (n <= 0) return;
  const int threads = threads::count();
  if (n == 1 || work <= kParallelGrain || threads == 1) {
    body(int64_t{0}, n);
    return;
  }
  threads::parallel_for(n, std::min<int64_t>(work / kChunkWork, int64_t{threads} * kChunksPerThread), body);
}

// y[0, width) = the rows [0, rows) combined, in kRowBlocks blocks: add_rows(acc, first,
// end) combines rows [first, end) into acc (width elements, starting at init), and the
// blocks' results are combined in block order. `work` sizes the parallel loop. Each block
// accumulates in a buffer of its own thread and is copied out when done: accumulating in
// the shared partial rows ran a two-thread column sum no faster than one thread, even
// with every row on its own cache lines (bench BM_ChannelSum).
template <class T, class Combine, class AddRows>
void reduce_row_blocks(int64_t rows, int64_t width, int64_t work, T init, Combine combine, AddRows add_rows, T* y) {
  const int64_t blocks = std::min(rows, kRowBlocks);
  std::vector<T> partial(static_cast<size_t>(blocks * width));
  parallel_for(blocks, work, [&](int64_t first, int64_t last) {
    std::vector<T> acc(static_cast<size_t>(width));
    for (int64_t b = first; b < last; ++b) {
      std::fill(acc.begin(), acc.end(), init);
      add_rows(acc.data(), rows * b / blocks, rows * (b + 1) / blocks);
      std::copy(acc.begin(), acc.end(), partial.begin() + b * width);
    }
  });
  std::fill_n(y, width, init);
  for (int64_t b = 0; b < blocks; ++b)
    for (int64_t j = 0; j < width; ++j) y[j] = combine(y[j], partial[static_cast<size_t>(b * width + j)]);
}

// acc[j] = combine(acc[j], x[r·width + j]) for the rows r in [first, end), in order.
template <class T, class Combine>
AGILENN_CPU_CLONES void combine_rows(const T* x, int64_t first, int64_t end, int64_t width, T* acc, Combine combine) {
  for (int64_t r = first; r < end; ++r) {
    const T* row = x + r * width;
    for (int64_t j = 0; j < width; ++j) acc[j] = combine(acc[j], row[j]);
  }
}

// Calls f(T{}) with T the C++ type of a floating dtype.
template <class F>
void dispatch_float(DType t, const Node& node, F&& f) {
  switch (t) {
    case DType::f32: f(float{}); return;
    case DType::f64: f(double{}); return;
    default: AGILENN_THROW("op '" << node.op_name() << "': no CPU kernel for " << dtype_name(t));
  }
}


// Element strides of `in` viewed with out's rank: 0 along broadcast axes.
std::vector<int64_t> broadcast_strides(const Shape& in, const Shape& out);

// One output row of broadcast_loop, along which each input advances by 0 or 1 element
// (bit k of Unit set: input k advances by 1): offsets written as base + j with a
// compile-time step let the compiler vectorise the row.
template <size_t K, unsigned Unit, class F>
void broadcast_row(F& f, int64_t first, int64_t width, const std::array<int64_t, K>& base) {
  for (int64_t j = 0; j < width; ++j) {
    std::array<int64_t, K> o;
    for (size_t k = 0; k < K; ++k) o[k] = base[k] + ((Unit >> k) & 1u ? j : 0);
    f(first + j, o);
  }
}

template <size_t K, class F, unsigned... Units>
void broadcast_row_unit(unsigned unit, F& f, int64_t first, int64_t width, const std::array<int64_t, K>& base,
                        std::integer_sequence<unsigned, Units...>) {
  ((unit == Units ? broadcast_row<K, Units>(f, first, width, base) : void()), ...);
}

// Calls f(i, offsets) for every flat output index i, where offsets[k] is the element
// offset into input k (whose broadcast strides are strides[k]). Works a row (the last
// axis) at a time, parallel over rows; a chunk of rows finds its first row's offsets by
// division and steps from row to row with an odometer.
template <size_t K, class F>
void broadcast_loop(const Shape& out, const std::array<std::vector<int64_t>, K>& strides, F&& f) {
  const int64_t n = numel(out);
  if (n == 0) return;
  const auto dense = contiguous_strides(out);
  bool contiguous = true;
  for (const auto& s : strides) contiguous = contiguous && s == dense;
  if (contiguous) {
    parallel_for(n, n, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        std::array<int64_t, K> off;
        off.fill(i);
        f(i, off);
      }
    });
    return;
  }
  const size_t r = out.size();
  const int64_t width = out[r - 1], rows = n / width;
  // Broadcast operands step along the last axis by 1 or 0; a transpose's source need not.
  std::array<int64_t, K> step;
  bool unit_steps = true;
  unsigned unit = 0;
  for (size_t k = 0; k < K; ++k) {
    step[k] = strides[k][r - 1];
    unit_steps = unit_steps && (step[k] == 0 || step[k] == 1);
    if (step[k] == 1) unit |= 1u << k;
  }
  parallel_for(rows, n, [&](int64_t begin, int64_t end) {
    std::array<int64_t, K> off{};
    std::vector<int64_t> index(r - 1);
    int64_t rem = begin;
    for (size_t d = r - 1; d-- > 0;) {
      index[d] = rem % out[d];
      rem /= out[d];
      for (size_t k = 0; k < K; ++k) off[k] += index[d] * strides[k][d];
    }
    for (int64_t row = begin; row < end; ++row) {
      if (unit_steps) {
        broadcast_row_unit<K>(unit, f, row * width, width, off, std::make_integer_sequence<unsigned, 1u << K>{});
      } else {
        std::array<int64_t, K> o = off;
        for (int64_t j = 0; j < width; ++j) {
          f(row * width + j, o);
          for (size_t k = 0; k < K; ++k) o[k] += step[k];
        }
      }
      for (size_t d = r - 1; d-- > 0;) {
        for (size_t k = 0; k < K; ++k) off[k] += strides[k][d];
        if (++index[d] < out[d]) break;
        for (size_t k = 0; k < K; ++k) off[k] -= strides[k][d] * out[d];
        index[d] = 0;
      }
    }
  });
}

// Row-major GEMM through OpenBLAS: C = alpha·op(A)·op(B) + beta·C.
template <class T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
          const T* b, int64_t ldb, T beta, T* c, int64_t ldc);

// The op families, each registering its kernels (one source file each).
void register_elementwise(KernelTable&), register_reductions(KernelTable&), register_layout(KernelTable&),
    register_conv2d(KernelTable&), register_matmul(KernelTable&), register_indexing(KernelTable&),
    register_agilenn_fused(KernelTable&), register_cross_entropy(KernelTable&), register_collectives(KernelTable&);

// The CPU backend's optimizer updates (see Backend::sgdw_update, Backend::adam_update).
void sgdw_update(std::span<Tensor> params, std::span<const Tensor> grads, std::span<Tensor> velocities,
                 const SgdwHyper& hyper, const UpdateGuard& guard);
void adam_update(std::span<Tensor> params, std::span<const Tensor> grads, std::span<Tensor> m, std::span<Tensor> v,
                 const AdamHyper& hyper, const UpdateGuard& guard);

}  // namespace agilenn::cpu
