// gather, gather_backward, one_hot, dropout_mask, resize_bilinear.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/ir/shape_util.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/resize.h"
#include "kernels/shared/counter_rng.h"
#include "kernels/shared/resize.h"

namespace agilenn::cpu {
namespace {

int32_t checked_index(const Node& node, const int32_t* idx, int64_t i, int64_t dim) {
  const int32_t v = idx[i];
  AGILENN_CHECK(v >= 0 && v < dim, index_fault_message(node.op_name(), v, i, dim));
  return v;
}

}  // namespace

void resize_bilinear_into(const Tensor& x, Tensor& out) {
  AGILENN_CHECK(x.rank() == 4 && out.rank() == 4 && x.dim(0) == out.dim(0) && x.dim(3) == out.dim(3) &&
                    x.dtype() == out.dtype() && out.device() == Device::cpu && x.device() == Device::cpu,
                "resize_bilinear: " << shape_str(x.shape()) << " " << dtype_name(x.dtype()) << " into "
                                    << shape_str(out.shape()) << " " << dtype_name(out.dtype()));
  const int64_t n = x.dim(0), h = x.dim(1), w = x.dim(2), c = x.dim(3), oh = out.dim(1), ow = out.dim(2);
  const auto resize = [&](auto tag) {
    using T = decltype(tag);
    const T* xp = x.data<T>();
    T* y = out.data<T>();
    parallel_for(n * oh, out.numel(), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const int64_t b = r / oh;
        const kernels::ResizeTaps<T> ty = kernels::resize_taps<T>(r % oh, h, oh);
        for (int64_t j = 0; j < ow; ++j) {
          const kernels::ResizeTaps<T> tx = kernels::resize_taps<T>(j, w, ow);
          const T* p00 = xp + ((b * h + ty.lo) * w + tx.lo) * c;
          const T* p01 = xp + ((b * h + ty.lo) * w + tx.hi) * c;
          const T* p10 = xp + ((b * h + ty.hi) * w + tx.lo) * c;
          const T* p11 = xp + ((b * h + ty.hi) * w + tx.hi) * c;
          T* dst = y + (r * ow + j) * c;
          for (int64_t k = 0; k < c; ++k)
            dst[k] = kernels::bilinear(p00[k], p01[k], p10[k], p11[k], tx.frac, ty.frac);
        }
      }
    });
  };
  if (x.dtype() == DType::f64) resize(double{});
  else if (x.dtype() == DType::f32) resize(float{});
  else AGILENN_THROW("resize_bilinear: no CPU kernel for " << dtype_name(x.dtype()));
}

Tensor resize_bilinear(const Tensor& x, int64_t out_h, int64_t out_w) {
  AGILENN_CHECK(x.rank() == 4 && out_h > 0 && out_w > 0,
                "resize_bilinear: images " << shape_str(x.shape()) << " to " << out_h << "x" << out_w);
  Tensor out = Tensor::zeros({x.dim(0), out_h, out_w, x.dim(3)}, x.dtype());
  resize_bilinear_into(x, out);
  return out;
}

void register_indexing(KernelTable& t) {
  t.add("gather", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    const Tensor& x = in[0];
    const auto axis = static_cast<size_t>(normalize_axis(node.attrs.i("axis"), x.rank()));
    int64_t outer = 1, inner = 1;
    for (size_t i = 0; i < x.rank(); ++i) (i < axis ? outer : inner) *= i == axis ? 1 : x.dim(i);
    const int64_t dim = x.dim(axis), count = in[1].numel();
    const int32_t* idx = in[1].data<int32_t>();
    for (int64_t i = 0; i < count; ++i) checked_index(node, idx, i, dim);
    dispatch_float(out.dtype(), node, [&](auto tag) {
      using T = decltype(tag);
      const T* xp = x.data<T>();
      T* y = out.data<T>();
      parallel_for(outer * count, out.numel(), [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {
          const int64_t o = r / count, i = r % count;
          std::copy_n(xp + (o * dim + idx[i]) * inner, inner, y + r * inner);
        }
      });
    });
  });
  t.add("gather_backward", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    const auto axis = static_cast<size_t>(node.attrs.i("axis"));
    const int64_t dim = node.attrs.i("dim"), count = in[1].numel();
    int64_t outer = 1, inner = 1;
    for (size_t i = 0; i < out.rank(); ++i)
      if (i != axis) (i < axis ? outer : inner) *= out.dim(i);
    const int32_t* idx = in[1].data<int32_t>();
    for (int64_t i = 0; i < count; ++i) checked_index(node, idx, i, dim);
    dispatch_float(out.dtype(), node, [&](auto tag) {
      using T = decltype(tag);
      const T* g = in[0].data<T>();
      T* y = out.data<T>();
      std::fill(y, y + out.numel(), T(0));
      // Each outer slice is independent; within one, indices are added in order.
      parallel_for(outer, in[0].numel(), [&](int64_t begin, int64_t end) {
        for (int64_t o = begin; o < end; ++o)
          for (int64_t i = 0; i < count; ++i) {
            const T* src = g + (o * count + i) * inner;
            T* dst = y + (o * dim + idx[i]) * inner;
            for (int64_t k = 0; k < inner; ++k) dst[k] += src[k];
          }
      });
    });
  });
  t.add("one_hot", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    const int64_t depth = node.attrs.i("depth"), count = in[0].numel();
    const int32_t* idx = in[0].data<int32_t>();
    dispatch_any(out.dtype(), [&](auto tag) {
      using T = decltype(tag);
      T* y = out.data<T>();
      std::fill(y, y + out.numel(), T(0));
      for (int64_t i = 0; i < count; ++i) y[i * depth + checked_index(node, idx, i, depth)] = T(1);
    });
  });
  t.add("dropout_mask", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    const double p = node.attrs.f("p");
    const auto seed = static_cast<uint64_t>(node.attrs.i("seed"));
    const auto counter = static_cast<uint64_t>(static_cast<uint32_t>(in[0].data<int32_t>()[0]));
    dispatch_float(out.dtype(), node, [&](auto tag) {
      using T = decltype(tag);
      T* y = out.data<T>();
      const T keep = static_cast<T>(1.0 / (1.0 - p));
      const int64_t n = out.numel();
      parallel_for(n, n, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i)
          y[i] = kernels::dropout_drops(seed, counter, static_cast<uint64_t>(i), static_cast<float>(p)) ? T(0) : keep;
      });
    });
  });
  t.add("resize_bilinear", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    dispatch_float(out.dtype(), node, [&](auto) { resize_bilinear_into(in[0], out); });
  });
}

}  // namespace agilenn::cpu
