// sum, max, min over any set of axes; fused_sum; argmin along one axis; softmax and
// log_softmax along one axis. Every result is deterministic: each output is combined by a
// fixed set of threads in a fixed order (per-thread strided loops, then a shared-memory
// tree), and that order depends only on the shapes, never on timing or on the device.
#include <math_constants.h>

#include <algorithm>
#include <string>
#include <vector>

#include "engine/ir/shape_util.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/fused_program.cuh"

namespace agilenn::cuda {
namespace {

// Extents and element strides of up to kMaxRank axes, outermost first; passed by value.
struct Dims {
  int rank = 0;
  int64_t extent[kMaxRank] = {};
  int64_t stride[kMaxRank] = {};
};

// Memory offset of the i-th element (row-major order over d's extents).
__device__ __forceinline__ int64_t offset_of(const Dims& d, int64_t i) {
  if (d.rank == 1) return i * d.stride[0];
  int64_t off = 0;
  for (int a = d.rank - 1; a >= 0; --a) {
    off += (i % d.extent[a]) * d.stride[a];
    i /= d.extent[a];
  }
  return off;
}

struct SumOp {
  static __device__ __forceinline__ float init() { return 0.0f; }
  __device__ __forceinline__ float operator()(float a, float b) const { return a + b; }
};
// The same comparisons as the CPU kernels, so NaN inputs are skipped the same way.
struct MaxOp {
  static __device__ __forceinline__ float init() { return -CUDART_INF_F; }
  __device__ __forceinline__ float operator()(float a, float b) const { return b > a ? b : a; }
};
struct MinOp {
  static __device__ __forceinline__ float init() { return CUDART_INF_F; }
  __device__ __forceinline__ float operator()(float a, float b) const { return b < a ? b : a; }
};

// A candidate of argmin: value and its position along the axis.
struct ValIdx {
  float v;
  int64_t i;
};
// Total order: NaN above everything, equal values ordered by position, so the tree
// finds the first minimum whatever order it combines in.
struct ArgminOp {
  __device__ __forceinline__ static bool before(const ValIdx& a, const ValIdx& b) {
    const bool an = isnan(a.v), bn = isnan(b.v);
    if (an != bn) return bn;  // the non-NaN one comes first
    if (!an && a.v != b.v) return a.v < b.v;
    return a.i < b.i;
  }
  __device__ __forceinline__ ValIdx operator()(const ValIdx& a, const ValIdx& b) const { return before(b, a) ? b : a; }
};

// Combines, for every lane-group of the block, the `group` values sh[t], sh[t + stride],
// ..., sh[t + (group-1)·stride] with a fixed tree; `lane` in [0, group) is the thread's
// place in its group and `group` a power of two. Every thread of the block must call it
// (it synchronises). Returns the group's result to each of its threads.
template <class T, class Op>
__device__ T tree_reduce(T* sh, T v, int lane, int group, int stride, Op op) {
  const int t = static_cast<int>(threadIdx.x);
  sh[t] = v;
  __syncthreads();
  for (int s = group / 2; s > 0; s /= 2) {
    if (lane < s) sh[t] = op(sh[t], sh[t + s * stride]);
    __syncthreads();
  }
  const T r = sh[t - lane * stride];
  __syncthreads();  // the caller may write sh again at once
  return r;
}

// General reduction: groups of `group` consecutive threads (a power of two dividing
// kThreads) each own one output o and stride over its reduced sub-space (`red`, of
// per_output elements) starting at the offset of o among the kept axes (`kept`).
template <class Op>
__global__ void reduce_groups_kernel(const float* x, float* y, int64_t outputs, int64_t per_output, Dims kept,
                                     Dims red, int group) {
  __shared__ float sh[kThreads];
  const Op op;
  const int lane = static_cast<int>(threadIdx.x) & (group - 1);
  const int64_t per_block = kThreads / group;
  for (int64_t first = static_cast<int64_t>(blockIdx.x) * per_block; first < outputs;
       first += static_cast<int64_t>(gridDim.x) * per_block) {
    const int64_t o = first + threadIdx.x / group;
    float acc = Op::init();
    if (o < outputs) {
      const int64_t base = offset_of(kept, o);
      for (int64_t j = lane; j < per_output; j += group) acc = op(acc, x[base + offset_of(red, j)]);
    }
    acc = tree_reduce(sh, acc, lane, group, 1, op);
    if (o < outputs && lane == 0) y[o] = acc;
  }
}

// The element (o, r, col) of a column reduction's input: a tensor viewed as
// [outer, rows, width], or a fused program's register sums[o] (fused_sum: outer, the
// number of registers summed).
struct DenseColumns {
  const float* x;
  int64_t rows, width;
  __device__ float operator()(int64_t o, int64_t r, int64_t col) const { return x[(o * rows + r) * width + col]; }
};
struct FusedColumns {
  FusedProgramArgs program;
  int64_t width;
  int sums[kernels::kFusedMaxSums];
  __device__ float operator()(int64_t o, int64_t r, int64_t col) const {
    return program.at(r * width + col, sums[o]);
  }
};

// Column reduction of an input viewed as [outer, rows, width] (elements from `load`): a
// block covers kColumns adjacent columns (consecutive threads read consecutive addresses)
// with kRowLanes threads each; the rows are cut into `chunks` ranges of rows_per_chunk,
// and y[(o·chunks + chunk)·width + col] combines column col of chunk `chunk` of slice o.
constexpr int kColumns = 32, kRowLanes = kThreads / kColumns;

template <class Op, class Load>
__global__ void reduce_columns_kernel(Load load, float* y, int64_t outer, int64_t rows, int64_t width,
                                      int64_t rows_per_chunk, int64_t chunks) {
  __shared__ float sh[kThreads];
  const Op op;
  const int tx = static_cast<int>(threadIdx.x) % kColumns, ty = static_cast<int>(threadIdx.x) / kColumns;
  for (int64_t o = blockIdx.z; o < outer; o += gridDim.z)
    for (int64_t chunk = blockIdx.y; chunk < chunks; chunk += gridDim.y)
      for (int64_t c0 = static_cast<int64_t>(blockIdx.x) * kColumns; c0 < width;
           c0 += static_cast<int64_t>(gridDim.x) * kColumns) {
        const int64_t col = c0 + tx;
        float acc = Op::init();
        if (col < width) {
          const int64_t end = (chunk + 1) * rows_per_chunk < rows ? (chunk + 1) * rows_per_chunk : rows;
          for (int64_t r = chunk * rows_per_chunk + ty; r < end; r += kRowLanes) acc = op(acc, load(o, r, col));
        }
        acc = tree_reduce(sh, acc, ty, kRowLanes, kColumns, op);
        if (ty == 0 && col < width) y[(o * chunks + chunk) * width + col] = acc;
      }
}

// Argmin along an axis of x viewed as [outer, extent, inner]: groups of `group` threads
// each own one output r (group = 1 when inner > 1: then neighbouring threads read
// neighbouring addresses).
__global__ void argmin_kernel(const float* x, int32_t* y, int64_t outputs, int64_t extent, int64_t inner, int group) {
  __shared__ ValIdx sh[kThreads];
  const ArgminOp op;
  const int lane = static_cast<int>(threadIdx.x) & (group - 1);
  const int64_t per_block = kThreads / group;
  for (int64_t first = static_cast<int64_t>(blockIdx.x) * per_block; first < outputs;
       first += static_cast<int64_t>(gridDim.x) * per_block) {
    const int64_t r = first + threadIdx.x / group;
    const int64_t base = (r / inner) * extent * inner + r % inner;
    ValIdx best{CUDART_NAN_F, extent};  // loses to every real candidate
    if (r < outputs)
      for (int64_t j = lane; j < extent; j += group) best = op(best, ValIdx{x[base + j * inner], j});
    best = tree_reduce(sh, best, lane, group, 1, op);
    // The CPU kernel keeps position 0 when x[0] is NaN (no comparison with it succeeds).
    if (r < outputs && lane == 0) y[r] = isnan(x[base]) ? 0 : static_cast<int32_t>(best.i);
  }
}

// Softmax (kLog = false) or log-softmax along an axis of x viewed as [outer, extent,
// inner]; groups as in argmin_kernel. Max-subtracted: y = exp(x - m) / Σ exp(x - m), or
// y = x - (m + log Σ exp(x - m)).
template <bool kLog>
__global__ void softmax_kernel(const float* x, float* y, int64_t outputs, int64_t extent, int64_t inner, int group) {
  __shared__ float sh[kThreads];
  const int lane = static_cast<int>(threadIdx.x) & (group - 1);
  const int64_t per_block = kThreads / group;
  for (int64_t first = static_cast<int64_t>(blockIdx.x) * per_block; first < outputs;
       first += static_cast<int64_t>(gridDim.x) * per_block) {
    const int64_t r = first + threadIdx.x / group;
    const bool valid = r < outputs;
    const int64_t base = (r / inner) * extent * inner + r % inner;
    float m = MaxOp::init();
    if (valid)
      for (int64_t j = lane; j < extent; j += group) m = MaxOp()(m, x[base + j * inner]);
    m = tree_reduce(sh, m, lane, group, 1, MaxOp());
    float s = 0.0f;
    if (valid)
      for (int64_t j = lane; j < extent; j += group) s += expf(x[base + j * inner] - m);
    s = tree_reduce(sh, s, lane, group, 1, SumOp());
    if (!valid) continue;
    if constexpr (kLog) {
      const float lse = m + logf(s);
      for (int64_t j = lane; j < extent; j += group) y[base + j * inner] = x[base + j * inner] - lse;
    } else {
      const float inv = 1.0f / s;
      for (int64_t j = lane; j < extent; j += group) y[base + j * inner] = expf(x[base + j * inner] - m) * inv;
    }
  }
}

// ---- host launchers

// Threads per output: the smallest power of two covering `work`, at most kThreads.
int group_for(int64_t work) {
  int g = 1;
  while (g < kThreads && g < work) g *= 2;
  return g;
}

unsigned grid_cap(int64_t n, int64_t cap) { return static_cast<unsigned>(std::clamp<int64_t>(n, 1, cap)); }

Dims make_dims(const std::vector<int64_t>& extent, const std::vector<int64_t>& stride, const std::string& op,
               const Shape& shape) {
  AGILENN_CHECK(extent.size() <= static_cast<size_t>(kMaxRank),
                "op '" << op << "': the CUDA reduction supports at most " << kMaxRank << " kept or reduced axis "
                       << "groups, input " << shape_str(shape) << " has " << extent.size());
  Dims d;
  d.rank = static_cast<int>(extent.size());
  for (size_t i = 0; i < extent.size(); ++i) d.extent[i] = extent[i], d.stride[i] = stride[i];
  return d;
}

// Combines column-wise the input viewed as [outer, rows, width] (elements from `load`)
// into y [outer, width]. With few columns and many rows, the rows are first cut into
// chunks reduced in parallel into workspace, and the chunk results are then combined by
// the same kernel.
template <class Op, class Load>
void launch_reduce_columns(const Load& load, float* y, int64_t outer, int64_t rows, int64_t width) {
  const int64_t col_blocks = (width + kColumns - 1) / kColumns;
  // Aim for ~2048 blocks in all, each chunk at least 128 rows (16 per thread).
  const int64_t max_chunks = std::max<int64_t>(1, rows / 128);
  int64_t chunks = std::clamp<int64_t>(2048 / std::max<int64_t>(1, col_blocks * outer), 1, max_chunks);
  const int64_t rows_per_chunk = rows == 0 ? 0 : (rows + chunks - 1) / chunks;
  if (rows_per_chunk > 0) chunks = (rows + rows_per_chunk - 1) / rows_per_chunk;
  const dim3 grid(grid_cap(col_blocks, 1 << 30), grid_cap(chunks, 65535), grid_cap(outer, 65535));
  if (chunks == 1) {
    reduce_columns_kernel<Op><<<grid, kThreads, 0, stream()>>>(load, y, outer, rows, width, rows_per_chunk, 1);
    AGILENN_CUDA_CHECK_LAUNCH();
    return;
  }
  auto* partial = static_cast<float*>(workspace(static_cast<size_t>(outer * chunks * width) * sizeof(float)));
  reduce_columns_kernel<Op><<<grid, kThreads, 0, stream()>>>(load, partial, outer, rows, width, rows_per_chunk,
                                                             chunks);
  AGILENN_CUDA_CHECK_LAUNCH();
  const dim3 grid2(grid.x, 1, grid.z);
  reduce_columns_kernel<Op><<<grid2, kThreads, 0, stream()>>>(DenseColumns{partial, chunks, width}, y, outer, chunks,
                                                              width, chunks, 1);
  AGILENN_CUDA_CHECK_LAUNCH();
}

// y = reduction of x (shape `shape`) over `axes` (sorted, unique), y in kept-axis order.
template <class Op>
void launch_reduce(const float* x, float* y, const Shape& shape, const std::vector<int64_t>& axes,
                   const std::string& op) {
  // Drop unit axes and merge neighbours of the same kind (kept or reduced): each merged
  // group is contiguous in memory, so it is one axis of the product extent.
  std::vector<int64_t> extent;
  std::vector<bool> reduced;
  int64_t outputs = 1, per_output = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    const bool r = std::find(axes.begin(), axes.end(), static_cast<int64_t>(i)) != axes.end();
    (r ? per_output : outputs) *= shape[i];
    if (shape[i] == 1) continue;
    if (!extent.empty() && reduced.back() == r) {
      extent.back() *= shape[i];
    } else {
      extent.push_back(shape[i]);
      reduced.push_back(r);
    }
  }
  if (outputs == 0) return;
  const size_t n = extent.size();
  // [reduced, kept] and [kept, reduced, kept]: column reductions of [outer, rows, width].
  if (n == 2 && reduced[0] && !reduced[1])
    return launch_reduce_columns<Op>(DenseColumns{x, extent[0], extent[1]}, y, 1, extent[0], extent[1]);
  if (n == 3 && !reduced[0] && reduced[1] && !reduced[2])
    return launch_reduce_columns<Op>(DenseColumns{x, extent[1], extent[2]}, y, extent[0], extent[1], extent[2]);

  std::vector<int64_t> stride(n, 1);
  for (size_t i = n; i-- > 1;) stride[i - 1] = stride[i] * extent[i];
  std::vector<int64_t> ke, ks, re, rs;
  for (size_t i = 0; i < n; ++i) {
    (reduced[i] ? re : ke).push_back(extent[i]);
    (reduced[i] ? rs : ks).push_back(stride[i]);
  }
  const Dims kept = make_dims(ke, ks, op, shape), red = make_dims(re, rs, op, shape);
  const int group = group_for(per_output);
  reduce_groups_kernel<Op><<<blocks_for(outputs * group), kThreads, 0, stream()>>>(x, y, outputs, per_output, kept,
                                                                                   red, group);
  AGILENN_CUDA_CHECK_LAUNCH();
}

// View of a shape as [outer, extent, inner] around one axis.
struct AxisView {
  int64_t outer = 1, extent = 1, inner = 1;
  AxisView(const Shape& x, int64_t axis) {
    const auto a = static_cast<size_t>(normalize_axis(axis, x.size()));
    for (size_t i = 0; i < x.size(); ++i) (i < a ? outer : i == a ? extent : inner) *= x[i];
  }
  int64_t outputs() const { return outer * inner; }
  // A group of threads per output when the axis is contiguous, else one thread each.
  int group() const { return inner == 1 ? group_for(extent) : 1; }
};

void launch_argmin(const float* x, int32_t* y, const AxisView& v) {
  if (v.outputs() == 0) return;
  AGILENN_CHECK(v.extent > 0, "argmin over an empty axis");
  const int g = v.group();
  argmin_kernel<<<blocks_for(v.outputs() * g), kThreads, 0, stream()>>>(x, y, v.outputs(), v.extent, v.inner, g);
  AGILENN_CUDA_CHECK_LAUNCH();
}

template <bool kLog>
void launch_softmax(const float* x, float* y, const AxisView& v) {
  if (v.outputs() == 0 || v.extent == 0) return;
  const int g = v.group();
  softmax_kernel<kLog><<<blocks_for(v.outputs() * g), kThreads, 0, stream()>>>(x, y, v.outputs(), v.extent, v.inner,
                                                                               g);
  AGILENN_CUDA_CHECK_LAUNCH();
}

// ---- registration

template <class Op>
void add_reduction(KernelTable& t, const std::string& name) {
  t.add(name, [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    dispatch_f32(out.dtype(), node, [&](float) {
      const auto axes = normalize_axes(node.attrs.ints("axes"), in[0].rank());
      launch_reduce<Op>(in[0].data<float>(), out.data<float>(), in[0].shape(), axes, node.op_name());
    });
  });
}

template <bool kLog>
void softmax_family(const Node& node, std::span<const Tensor> in, Tensor& out) {
  dispatch_f32(out.dtype(), node, [&](float) {
    launch_softmax<kLog>(in[0].data<float>(), out.data<float>(), AxisView(in[0].shape(), node.attrs.i("axis")));
  });
}

}  // namespace

void register_reductions(KernelTable& table) {
  add_reduction<SumOp>(table, "sum");
  add_reduction<MaxOp>(table, "max");
  add_reduction<MinOp>(table, "min");
  table.add("argmin", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    dispatch_f32(in[0].dtype(), node, [&](float) {
      launch_argmin(in[0].data<float>(), out.data<int32_t>(), AxisView(in[0].shape(), node.attrs.i("axis")));
    });
  });
  // The fused program's rows (its leading axes, merged) summed as sum's column reduction,
  // one slice of `outer` per summed register.
  table.add("fused_sum", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    dispatch_f32(out.dtype(), node, [&](float) {
      const Shape shape(node.attrs.ints("shape").begin(), node.attrs.ints("shape").end());
      const std::vector<int32_t> sums = fused_sum_registers(node.attrs, in.size());
      const auto outputs = static_cast<int64_t>(sums.size());
      const int64_t width = out.numel() / outputs;
      if (width == 0) return;
      const int64_t rows = numel(shape) / width;
      FusedColumns load{fused_program_args(node, in, shape), width, {}};
      std::copy(sums.begin(), sums.end(), load.sums);
      launch_reduce_columns<SumOp>(load, out.data<float>(), outputs, rows, width);
    });
  });
  table.add("softmax", softmax_family<false>);
  table.add("log_softmax", softmax_family<true>);
}

}  // namespace agilenn::cuda
