// gather, gather_backward, one_hot, dropout_mask, resize_bilinear: the GPU twins of
// kernels/cpu/indexing.cpp.
//
// Indices live on the device, so they cannot be checked on the host as the CPU does
// (that would synchronise, and break graph capture). An index outside its axis cannot
// throw here; instead gather writes NaN (0 for integer dtypes) so the fault shows in the
// loss, one_hot leaves the row all zero and gather_backward drops the contribution.
#include <cmath>
#include <type_traits>

#include "engine/ir/shape_util.h"
#include "kernels/cpu/counter_rng.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/host_device.h"
#include "kernels/cuda/strided.cuh"

namespace agilenn::cuda {
namespace {

// Above this many indices, gather_backward scatters with atomics instead of letting each
// output element scan every index (which costs outputs × indices).
constexpr int64_t kMaxScanIndices = 4096;

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
  AGILENN_HD void operator()(int64_t i) const {
    const int64_t k = i % inner, r = i / inner;
    const int64_t j = r % count, o = r / count;
    const int64_t v = idx[j];
    y[i] = v >= 0 && v < dim ? x[(o * dim + v) * inner + k] : bad_index_value<T>();
  }
};

// y [outer, dim, inner] from g [outer, count, inner]. Each output element sums its
// matching indices in index order, starting from zero: deterministic, and the same
// additions in the same order as the CPU.
template <class T>
struct GatherBackwardScan {
  const T* g;
  const int32_t* idx;
  int64_t count, dim, inner;
  T* y;
  AGILENN_HD void operator()(int64_t i) const {
    const int64_t k = i % inner, r = i / inner;
    const int64_t d = r % dim, o = r / dim;
    const T* src = g + o * count * inner + k;
    T acc = T(0);
    for (int64_t j = 0; j < count; ++j)
      if (idx[j] == d) acc += src[j * inner];
    y[i] = acc;
  }
};

// One thread per element of g, added into a zeroed y: the order of additions (and so
// the rounding) varies from run to run.
template <class T>
struct GatherBackwardAtomic {
  const T* g;
  const int32_t* idx;
  int64_t count, dim, inner;
  T* y;
  __device__ void operator()(int64_t i) const {
    const int64_t k = i % inner, r = i / inner;
    const int64_t j = r % count, o = r / count;
    const int64_t v = idx[j];
    if (v >= 0 && v < dim) atomicAdd(y + (o * dim + v) * inner + k, g[i]);
  }
};

// y [count, depth].
template <class T>
struct OneHot {
  const int32_t* idx;
  int64_t depth;
  T* y;
  AGILENN_HD void operator()(int64_t i) const { y[i] = idx[i / depth] == i % depth ? T(1) : T(0); }
};

// The counter is read on the device: it is a graph input that changes between replays.
template <class T>
struct DropoutMask {
  uint64_t seed;
  const int32_t* counter;
  double p;
  T keep;
  T* y;
  AGILENN_HD void operator()(int64_t i) const {
    const auto c = static_cast<uint64_t>(static_cast<uint32_t>(*counter));
    y[i] = uniform01(seed, c, static_cast<uint64_t>(i)) < p ? T(0) : keep;
  }
};

struct Taps {
  int64_t lo, hi;
  double frac;
};

// Half-pixel centres: source = (dest + 0.5) * in/out - 0.5, clamped to the image (the
// CPU's formula, in double, so both pick the same taps and weights).
AGILENN_HD Taps taps(int64_t dest, int64_t in_size, int64_t out_size) {
  const double src =
      (static_cast<double>(dest) + 0.5) * static_cast<double>(in_size) / static_cast<double>(out_size) - 0.5;
  const double fl = floor(src);
  const int64_t lo = fl < 0.0 ? 0 : static_cast<int64_t>(fl);
  const int64_t up = static_cast<int64_t>(ceil(src));
  return {lo < in_size - 1 ? lo : in_size - 1, up < in_size - 1 ? up : in_size - 1, src - fl};
}

// a + (b - a)·t, each operation rounded on its own (no fused multiply-add on the GPU), as
// the CPU loop rounds it.
AGILENN_HD float lerp(float a, float b, float t) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(a, __fmul_rn(__fsub_rn(b, a), t));
#else
  return a + (b - a) * t;
#endif
}

// y [n, oh, ow, c] from x [n, h, w, c].
struct ResizeBilinear {
  const float* x;
  int64_t h, w, c, oh, ow;
  float* y;
  AGILENN_HD void operator()(int64_t i) const {
    const int64_t k = i % c, px = (i / c) % ow, py = (i / c / ow) % oh, b = i / c / ow / oh;
    const Taps ty = taps(py, h, oh), tx = taps(px, w, ow);
    const float* img = x + b * h * w * c + k;
    const float fx = static_cast<float>(tx.frac), fy = static_cast<float>(ty.frac);
    const float top = lerp(img[(ty.lo * w + tx.lo) * c], img[(ty.lo * w + tx.hi) * c], fx);
    const float bottom = lerp(img[(ty.hi * w + tx.lo) * c], img[(ty.hi * w + tx.hi) * c], fx);
    y[i] = lerp(top, bottom, fy);
  }
};

// ---- launchers

template <class T>
void launch_gather(int64_t outer, int64_t dim, int64_t inner, const T* x, int64_t count, const int32_t* idx, T* y) {
  launch_for_each(outer * count * inner, Gather<T>{x, idx, count, dim, inner, y});
}

// Scans while that is cheap; past kMaxScanIndices indices, atomics.
template <class T>
void launch_gather_backward(int64_t outer, int64_t count, int64_t inner, const T* g, const int32_t* idx, int64_t dim,
                            T* y) {
  const int64_t n = outer * dim * inner;
  if (n == 0) return;
  if (count <= kMaxScanIndices) {
    launch_for_each(n, GatherBackwardScan<T>{g, idx, count, dim, inner, y});
    return;
  }
  AGILENN_CUDA_CHECK(cudaMemsetAsync(y, 0, static_cast<size_t>(n) * sizeof(T), stream()));
  launch_for_each(outer * count * inner, GatherBackwardAtomic<T>{g, idx, count, dim, inner, y});
}

template <class T>
void launch_one_hot(int64_t count, int64_t depth, const int32_t* idx, T* y) {
  launch_for_each(count * depth, OneHot<T>{idx, depth, y});
}

template <class T>
void launch_dropout_mask(int64_t n, uint64_t seed, const int32_t* counter, double p, T* y) {
  launch_for_each(n, DropoutMask<T>{seed, counter, p, static_cast<T>(1.0 / (1.0 - p)), y});
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
      launch_gather(s.outer, x.dim(axis), s.inner, x.data<T>(), in[1].numel(), in[1].data<int32_t>(), out.data<T>());
    });
  });
  t.add("gather_backward", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    const auto axis = static_cast<size_t>(node.attrs.i("axis"));
    const OuterInner s = outer_inner(out.shape(), axis);
    dispatch_f32(out.dtype(), node, [&](float) {
      launch_gather_backward(s.outer, in[1].numel(), s.inner, in[0].data<float>(), in[1].data<int32_t>(),
                             node.attrs.i("dim"), out.data<float>());
    });
  });
  t.add("one_hot", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    dispatch_any(out.dtype(), [&](auto tag) {
      using T = decltype(tag);
      launch_one_hot(in[0].numel(), node.attrs.i("depth"), in[0].data<int32_t>(), out.data<T>());
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
