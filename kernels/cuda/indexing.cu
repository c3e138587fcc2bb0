// gather, gather_backward, one_hot, dropout_mask, resize_bilinear on the GPU (the CPU's
// are in kernels/cpu/indexing.cpp).
//
// Indices live on the device, so they cannot be checked on the host as the CPU does
// (that would synchronise, and break graph capture). An index outside its axis is
// recorded in the device's fault slot (fault.cuh), which the host raises as the CPU's
// error at its next synchronisation; meanwhile gather writes NaN (0 for integer dtypes),
// one_hot leaves the row all zero and gather_backward drops the contribution.
#include <cub/device/device_radix_sort.cuh>

#include <bit>
#include <climits>
#include <cmath>
#include <type_traits>

#include "engine/ir/shape_util.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/strided.cuh"
#include "kernels/shared/counter_rng.h"
#include "kernels/shared/resize.h"

namespace agilenn::cuda {
namespace {

// gather_backward lets each output element scan every index while there are few indices
// (one thread's serial work) and outputs × indices stays small; otherwise it sorts the
// indices (stably) and each output element sums its own run of them. Both add in index
// order from zero: the CPU's additions, bit for bit.
constexpr int64_t kMaxScanIndices = 4096;
constexpr int64_t kMaxScanWork = int64_t{1} << 26;

// ---- kernels: per-element functors, run by for_each_kernel (strided.cuh). They are
// callable on the host too, so their index arithmetic can be checked without a GPU.

template <class T>
AGILENN_HD T bad_index_value() {
  if constexpr (std::is_floating_point_v<T>)
    return static_cast<T>(NAN);
  else
    return T(0);
}

// y [outer, count, inner] from x [outer, dim, inner].
template <class T>
struct Gather {
  const T* x;
  const int32_t* idx;
  int64_t count, dim, inner;
  T* y;
  FaultSite fault;
  AGILENN_HD void operator()(int64_t i) const {
    const int64_t k = i % inner, r = i / inner;
    const int64_t j = r % count, o = r / count;
    const int64_t v = idx[j];
    if (v >= 0 && v < dim) {
      y[i] = x[(o * dim + v) * inner + k];
      return;
    }
    y[i] = bad_index_value<T>();
    if (i == j * inner) report_bad_index(fault, j, v, dim);  // once per index: o = 0, k = 0
  }
};

// y [outer, dim, inner] from g [outer, count, inner]. Each output element sums its
// matching indices in index order, starting from zero.
template <class T>
struct GatherBackwardScan {
  const T* g;
  const int32_t* idx;
  int64_t count, dim, inner;
  T* y;
  FaultSite fault;
  AGILENN_HD void operator()(int64_t i) const {
    const int64_t k = i % inner, r = i / inner;
    const int64_t d = r % dim, o = r / dim;
    const T* src = g + o * count * inner + k;
    T acc = T(0);
    for (int64_t j = 0; j < count; ++j) {
      const int32_t v = idx[j];
      if (v == d) acc += src[j * inner];
      if (i == 0 && (v < 0 || v >= dim)) report_bad_index(fault, j, v, dim);
    }
    y[i] = acc;
  }
};

// The sorted path. keys[j] = idx[j] (or dim, past every valid index, when out of range),
// positions[j] = j; sorted stably by key, the positions of each index come out ascending.
struct SortKeys {
  const int32_t* idx;
  int64_t dim;
  uint32_t* keys;
  uint32_t* positions;
  FaultSite fault;
  AGILENN_HD void operator()(int64_t j) const {
    const int32_t v = idx[j];
    const bool ok = v >= 0 && v < dim;
    if (!ok) report_bad_index(fault, j, v, dim);
    keys[j] = ok ? static_cast<uint32_t>(v) : static_cast<uint32_t>(dim);
    positions[j] = static_cast<uint32_t>(j);
  }
};

// first[d] = the first sorted slot holding index d (d = 0..dim; first[dim] ends index dim-1's run).
struct RunStarts {
  const uint32_t* sorted_keys;
  int64_t count;
  uint32_t* first;
  AGILENN_HD void operator()(int64_t d) const {
    int64_t lo = 0, hi = count;
    while (lo < hi) {
      const int64_t mid = (lo + hi) / 2;
      if (static_cast<int64_t>(sorted_keys[mid]) < d) lo = mid + 1; else hi = mid;
    }
    first[d] = static_cast<uint32_t>(lo);
  }
};

template <class T>
struct GatherBackwardSorted {
  const T* g;
  const uint32_t* positions;  // sorted by index, ascending within an index
  const uint32_t* first;
  int64_t count, dim, inner;
  T* y;
  AGILENN_HD void operator()(int64_t i) const {
    const int64_t k = i % inner, r = i / inner;
    const int64_t d = r % dim, o = r / dim;
    const T* src = g + o * count * inner + k;
    T acc = T(0);
    for (uint32_t s = first[d]; s < first[d + 1]; ++s) acc += src[static_cast<int64_t>(positions[s]) * inner];
    y[i] = acc;
  }
};

// y [count, depth].
template <class T>
struct OneHot {
  const int32_t* idx;
  int64_t depth;
  T* y;
  FaultSite fault;
  AGILENN_HD void operator()(int64_t i) const {
    const int64_t r = i / depth, v = idx[r];
    y[i] = v == i % depth ? T(1) : T(0);
    if (i % depth == 0 && (v < 0 || v >= depth)) report_bad_index(fault, r, v, depth);
  }
};

// The counter is read on the device: it is a graph input that changes between replays.
template <class T>
struct DropoutMask {
  uint64_t seed;
  const int32_t* counter;
  float p;
  T keep;
  T* y;
  AGILENN_HD void operator()(int64_t i) const {
    const auto c = static_cast<uint64_t>(static_cast<uint32_t>(*counter));
    y[i] = kernels::dropout_drops(seed, c, static_cast<uint64_t>(i), p) ? T(0) : keep;
  }
};

// y [n, oh, ow, c] from x [n, h, w, c].
struct ResizeBilinear {
  const float* x;
  int64_t h, w, c, oh, ow;
  float* y;
  AGILENN_HD void operator()(int64_t i) const {
    const int64_t k = i % c, px = (i / c) % ow, py = (i / c / ow) % oh, b = i / c / ow / oh;
    const kernels::ResizeTaps<float> ty = kernels::resize_taps<float>(py, h, oh),
                                     tx = kernels::resize_taps<float>(px, w, ow);
    const float* img = x + b * h * w * c + k;
    y[i] = kernels::bilinear(img[(ty.lo * w + tx.lo) * c], img[(ty.lo * w + tx.hi) * c], img[(ty.hi * w + tx.lo) * c],
                             img[(ty.hi * w + tx.hi) * c], tx.frac, ty.frac);
  }
};

// Reports the indices outside [0, bound) where an op has no output elements to do it.
struct CheckIndices {
  const int32_t* idx;
  int64_t bound;
  FaultSite fault;
  AGILENN_HD void operator()(int64_t j) const {
    const int32_t v = idx[j];
    if (v < 0 || v >= bound) report_bad_index(fault, j, v, bound);
  }
};

// ---- launchers

template <class T>
void launch_gather(int64_t outer, int64_t dim, int64_t inner, const T* x, int64_t count, const int32_t* idx, T* y,
                   FaultSite fault) {
  if (outer * inner == 0) {  // nothing to gather, but the indices are still checked (as on the CPU)
    launch_for_each(count, CheckIndices{idx, dim, fault});
    return;
  }
  launch_for_each(outer * count * inner, Gather<T>{x, idx, count, dim, inner, y, fault});
}

// Scans while that is cheap (see kMaxScanIndices); otherwise a stable sort of the indices.
template <class T>
void launch_gather_backward(int64_t outer, int64_t count, int64_t inner, const T* g, const int32_t* idx, int64_t dim,
                            T* y, FaultSite fault) {
  const int64_t n = outer * dim * inner;
  if (n == 0) {
    launch_for_each(count, CheckIndices{idx, dim, fault});
    return;
  }
  if (count == 0) {
    AGILENN_CUDA_CHECK(cudaMemsetAsync(y, 0, static_cast<size_t>(n) * sizeof(T), stream()));
    return;
  }
  if (count <= kMaxScanIndices && n * count <= kMaxScanWork) {
    launch_for_each(n, GatherBackwardScan<T>{g, idx, count, dim, inner, y, fault});
    return;
  }
  AGILENN_CHECK(count <= INT_MAX && dim < (int64_t{1} << 31),
                "gather_backward on the GPU: " << count << " indices into " << dim << " rows is too many");
  const auto items = static_cast<int>(count);
  // Keys need bits for 0..dim (dim marks an out-of-range index).
  const int end_bit = std::bit_width(static_cast<uint64_t>(dim));
  size_t sort_bytes = 0;
  AGILENN_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, sort_bytes, static_cast<const uint32_t*>(nullptr),
                                                     static_cast<uint32_t*>(nullptr),
                                                     static_cast<const uint32_t*>(nullptr),
                                                     static_cast<uint32_t*>(nullptr), items, 0, end_bit, stream()));
  // Workspace: keys, sorted keys, positions, sorted positions, run starts, the sort's own.
  auto align = [](size_t b) { return (b + 255) / 256 * 256; };
  const size_t list = align(static_cast<size_t>(count) * sizeof(uint32_t));
  const size_t starts = align(static_cast<size_t>(dim + 1) * sizeof(uint32_t));
  char* ws = static_cast<char*>(workspace(4 * list + starts + sort_bytes));
  auto* keys = reinterpret_cast<uint32_t*>(ws);
  auto* sorted_keys = reinterpret_cast<uint32_t*>(ws + list);
  auto* positions = reinterpret_cast<uint32_t*>(ws + 2 * list);
  auto* sorted_positions = reinterpret_cast<uint32_t*>(ws + 3 * list);
  auto* first = reinterpret_cast<uint32_t*>(ws + 4 * list);
  void* sort_space = ws + 4 * list + starts;
  launch_for_each(count, SortKeys{idx, dim, keys, positions, fault});
  AGILENN_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(sort_space, sort_bytes, keys, sorted_keys, positions,
                                                     sorted_positions, items, 0, end_bit, stream()));
  launch_for_each(dim + 1, RunStarts{sorted_keys, count, first});
  launch_for_each(n, GatherBackwardSorted<T>{g, sorted_positions, first, count, dim, inner, y});
}

template <class T>
void launch_one_hot(int64_t count, int64_t depth, const int32_t* idx, T* y, FaultSite fault) {
  if (depth == 0) {
    launch_for_each(count, CheckIndices{idx, depth, fault});
    return;
  }
  launch_for_each(count * depth, OneHot<T>{idx, depth, y, fault});
}

template <class T>
void launch_dropout_mask(int64_t n, uint64_t seed, const int32_t* counter, double p, T* y) {
  launch_for_each(n, DropoutMask<T>{seed, counter, static_cast<float>(p), static_cast<T>(1.0 / (1.0 - p)), y});
}

void launch_resize_bilinear(int64_t n, int64_t h, int64_t w, int64_t c, const float* x, int64_t oh, int64_t ow,
                            float* y) {
  launch_for_each(n * oh * ow * c, ResizeBilinear{x, h, w, c, oh, ow, y});
}

// Sizes of `shape` before and after `axis`.
struct OuterInner {
  int64_t outer = 1, inner = 1;
};
OuterInner outer_inner(const Shape& shape, size_t axis) {
  OuterInner s;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i < axis) s.outer *= shape[i];
    if (i > axis) s.inner *= shape[i];
  }
  return s;
}

}  // namespace

// ---- registration

void register_indexing(KernelTable& t) {
  t.add("gather", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    const Tensor& x = in[0];
    const auto axis = static_cast<size_t>(normalize_axis(node.attrs.i("axis"), x.rank()));
    const OuterInner s = outer_inner(x.shape(), axis);
    dispatch_any(out.dtype(), [&](auto tag) {
      using T = decltype(tag);
      launch_gather(s.outer, x.dim(axis), s.inner, x.data<T>(), in[1].numel(), in[1].data<int32_t>(), out.data<T>(),
                    fault_site(node));
    });
  });
  t.add("gather_backward", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    const auto axis = static_cast<size_t>(node.attrs.i("axis"));
    const OuterInner s = outer_inner(out.shape(), axis);
    dispatch_f32(out.dtype(), node, [&](float) {
      launch_gather_backward(s.outer, in[1].numel(), s.inner, in[0].data<float>(), in[1].data<int32_t>(),
                             node.attrs.i("dim"), out.data<float>(), fault_site(node));
    });
  });
  t.add("one_hot", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    dispatch_any(out.dtype(), [&](auto tag) {
      using T = decltype(tag);
      launch_one_hot(in[0].numel(), node.attrs.i("depth"), in[0].data<int32_t>(), out.data<T>(), fault_site(node));
    });
  });
  t.add("dropout_mask", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    dispatch_f32(out.dtype(), node, [&](float) {
      launch_dropout_mask(out.numel(), static_cast<uint64_t>(node.attrs.i("seed")), in[0].data<int32_t>(),
                          node.attrs.f("p"), out.data<float>());
    });
  });
  t.add("resize_bilinear", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    const Tensor& x = in[0];
    dispatch_f32(out.dtype(), node, [&](float) {
      launch_resize_bilinear(x.dim(0), x.dim(1), x.dim(2), x.dim(3), x.data<float>(), out.dim(1), out.dim(2),
                             out.data<float>());
    });
  });
}

}  // namespace agilenn::cuda
