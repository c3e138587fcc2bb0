// sum, max, min, argmin over axes; softmax and log_softmax along one axis.
#include <algorithm>
#include <cmath>
#include <limits>

#include "engine/ir/shape_util.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/shared/rounding.h"

namespace agilenn::cpu {
namespace {

// Splits x's axes into kept (in output order) and reduced ones, each with its extent and
// input stride, so that one output element is a loop over the reduced sub-space. Adjacent
// axes of the same kind are merged into one (x is contiguous), which visits the same
// elements in the same order: most reductions then loop over a single strided axis
// (e.g. [N, H, W, C] over {1, 2}: H·W elements C apart) instead of decomposing every
// offset with a division per axis.
struct ReductionLayout {
  std::vector<int64_t> kept_extent, kept_stride, red_extent, red_stride;
  int64_t outputs = 1, per_output = 1;

  ReductionLayout(const Shape& x, const std::vector<int64_t>& axes) {
    const auto strides = contiguous_strides(x);
    bool last_reduced = false;
    for (size_t i = 0; i < x.size(); ++i) {
      const bool reduced = std::find(axes.begin(), axes.end(), static_cast<int64_t>(i)) != axes.end();
      std::vector<int64_t>& extent = reduced ? red_extent : kept_extent;
      std::vector<int64_t>& stride = reduced ? red_stride : kept_stride;
      if (i > 0 && reduced == last_reduced) {
        extent.back() *= x[i];
        stride.back() = strides[i];
      } else {
        extent.push_back(x[i]);
        stride.push_back(strides[i]);
      }
      last_reduced = reduced;
      (reduced ? per_output : outputs) *= x[i];
    }
  }

  int64_t base(int64_t o) const {
    int64_t off = 0;
    for (size_t d = kept_extent.size(); d-- > 0;) {
      off += (o % kept_extent[d]) * kept_stride[d];
      o /= kept_extent[d];
    }
    return off;
  }

  // Calls f(offset) for each element of output o's reduced sub-space, in a fixed order.
  template <class F>
  void for_each_reduced(int64_t o, F&& f) const {
    const int64_t b = base(o);
    if (red_extent.size() == 1) {
      for (int64_t j = 0; j < red_extent[0]; ++j) f(b + j * red_stride[0]);
      return;
    }
    for (int64_t j = 0; j < per_output; ++j) {
      int64_t off = b, r = j;
      for (size_t d = red_extent.size(); d-- > 0;) {
        off += (r % red_extent[d]) * red_stride[d];
        r /= red_extent[d];
      }
      f(off);
    }
  }
};

// y[j] = combine over r of x[r * width + j], the inner loop along contiguous memory.
template <class T, class Combine>
void reduce_rows(const T* x, int64_t rows, int64_t width, T* y, T init, Combine combine) {
  reduce_row_blocks(
      rows, width, rows * width, init, combine,
      [&](T* acc, int64_t first, int64_t end) { combine_rows(x, first, end, width, acc, combine); },
      y);
}

template <class Init, class Combine>
void reduction_kernel(KernelTable& t, const std::string& op, Init init, Combine combine) {
  t.add(op, [init, combine](const Node& node, std::span<const Tensor> in, Tensor& out) {
    dispatch_float(out.dtype(), node, [&](auto tag) {
      using T = decltype(tag);
      const auto axes = normalize_axes(node.attrs.ints("axes"), in[0].rank());
      const ReductionLayout layout(in[0].shape(), axes);
      const T* x = in[0].data<T>();
      T* y = out.data<T>();
      if (leading_axes(axes, in[0].rank())) {
        reduce_rows(x, layout.per_output, layout.outputs, y, init(tag), combine);
        return;
      }
      parallel_for(layout.outputs, layout.outputs * layout.per_output, [&](int64_t begin, int64_t end) {
        for (int64_t o = begin; o < end; ++o) {
          T acc = init(tag);
          layout.for_each_reduced(o, [&](int64_t off) { acc = combine(acc, x[off]); });
          y[o] = acc;
        }
      });
    });
  });
}

// View of x as [outer, extent, inner] around one axis.
struct AxisView {
  int64_t outer = 1, extent = 1, inner = 1;
  AxisView(const Shape& x, int64_t axis) {
    const auto a = static_cast<size_t>(normalize_axis(axis, x.size()));
    for (size_t i = 0; i < x.size(); ++i) (i < a ? outer : i == a ? extent : inner) *= x[i];
  }
};

template <bool kLog>
void softmax_kernel(const Node& node, std::span<const Tensor> in, Tensor& out) {
  dispatch_float(out.dtype(), node, [&](auto tag) {
    using T = decltype(tag);
    const AxisView v(in[0].shape(), node.attrs.i("axis"));
    const T* x = in[0].data<T>();
    T* y = out.data<T>();
    parallel_for(v.outer * v.inner, out.numel(), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const int64_t base = (r / v.inner) * v.extent * v.inner + r % v.inner;
        T m = -std::numeric_limits<T>::infinity();
        for (int64_t j = 0; j < v.extent; ++j) m = std::max(m, x[base + j * v.inner]);
        T s = 0;
        for (int64_t j = 0; j < v.extent; ++j) s += kernels::rn::exp(x[base + j * v.inner] - m);
        if constexpr (kLog) {
          const T lse = m + std::log(s);
          for (int64_t j = 0; j < v.extent; ++j) y[base + j * v.inner] = x[base + j * v.inner] - lse;
        } else {
          const T inv = T(1) / s;
          for (int64_t j = 0; j < v.extent; ++j)
            y[base + j * v.inner] = kernels::rn::exp(x[base + j * v.inner] - m) * inv;
        }
      }
    });
  });
}

}  // namespace

void register_reductions(KernelTable& t) {
  reduction_kernel(t, "sum", [](auto tag) { return decltype(tag)(0); }, [](auto a, auto b) { return a + b; });
  reduction_kernel(
      t, "max", [](auto tag) { return -std::numeric_limits<decltype(tag)>::infinity(); },
      [](auto a, auto b) { return b > a ? b : a; });
  reduction_kernel(
      t, "min", [](auto tag) { return std::numeric_limits<decltype(tag)>::infinity(); },
      [](auto a, auto b) { return b < a ? b : a; });

  t.add("argmin", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    dispatch_float(in[0].dtype(), node, [&](auto tag) {
      using T = decltype(tag);
      const AxisView v(in[0].shape(), node.attrs.i("axis"));
      const T* x = in[0].data<T>();
      int32_t* y = out.data<int32_t>();
      parallel_for(v.outer * v.inner, in[0].numel(), [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {
          const int64_t base = (r / v.inner) * v.extent * v.inner + r % v.inner;
          int64_t best = 0;  // first minimum wins ties
          for (int64_t j = 1; j < v.extent; ++j)
            if (x[base + j * v.inner] < x[base + best * v.inner]) best = j;
          y[r] = static_cast<int32_t>(best);
        }
      });
    });
  });

  t.add("softmax", softmax_kernel<false>);
  t.add("log_softmax", softmax_kernel<true>);
}

}  // namespace agilenn::cpu
