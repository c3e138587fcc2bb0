// conv2d, conv2d_backward_input, conv2d_backward_filter over NHWC input and HWIO filters.
// Depthwise-style grouping (one input channel per group) runs as direct loops; every
// other grouping as im2col + OpenBLAS GEMM, a chunk of images at a time.
#include <algorithm>
#include <array>
#include <cstring>

#include "engine/ir/shape_util.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/shared/depthwise_conv2d.h"

namespace agilenn::cpu {
namespace {

ConvGeometry geometry(const Node& node, const Shape& x, const Shape& w) {
  const Attrs& a = node.attrs;
  return conv_geometry(x, w, a.ints("stride"), a.ints("dilation"), a.ints("pads"), a.i("groups"));
}

// Bounds the im2col buffer (elements) so memory stays flat for any batch size.
constexpr int64_t kColumnBudget = 1 << 23;

int64_t images_per_chunk(const ConvGeometry& g) {
  const int64_t per_image = g.oh * g.ow * g.kh * g.kw * g.cin_g;
  return std::clamp<int64_t>(kColumnBudget / std::max<int64_t>(per_image, 1), 1, g.n);
}

// col[p, (kh*KW + kw)*Cin_g + ci] for output pixels p of images [n0, n0+count) and one group.
template <class T>
void im2col(const T* x, const ConvGeometry& g, int64_t n0, int64_t count, int64_t group, T* col) {
  const int64_t k = g.kh * g.kw * g.cin_g;
  const int64_t rows = count * g.oh;
  parallel_for(rows, rows * g.ow * k, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t n = n0 + r / g.oh, oh = r % g.oh;
      for (int64_t ow = 0; ow < g.ow; ++ow) {
        T* dst = col + (r * g.ow + ow) * k;
        for (int64_t kh = 0; kh < g.kh; ++kh) {
          const int64_t ih = oh * g.stride_h - g.pad_top + kh * g.dil_h;
          for (int64_t kw = 0; kw < g.kw; ++kw, dst += g.cin_g) {
            const int64_t iw = ow * g.stride_w - g.pad_left + kw * g.dil_w;
            if (ih < 0 || ih >= g.h || iw < 0 || iw >= g.w) {
              std::fill(dst, dst + g.cin_g, T(0));
            } else {
              const T* src = x + ((n * g.h + ih) * g.w + iw) * g.c + group * g.cin_g;
              std::copy(src, src + g.cin_g, dst);
            }
          }
        }
      }
    }
  });
}

// dx += col2im(col): the adjoint of im2col. Parallel over images, which never share pixels.
template <class T>
void col2im_add(const T* col, const ConvGeometry& g, int64_t n0, int64_t count, int64_t group, T* dx) {
  const int64_t k = g.kh * g.kw * g.cin_g;
  parallel_for(count, count * g.oh * g.ow * k, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t n = n0 + i;
      for (int64_t oh = 0; oh < g.oh; ++oh)
        for (int64_t ow = 0; ow < g.ow; ++ow) {
          const T* src = col + ((i * g.oh + oh) * g.ow + ow) * k;
          for (int64_t kh = 0; kh < g.kh; ++kh) {
            const int64_t ih = oh * g.stride_h - g.pad_top + kh * g.dil_h;
            for (int64_t kw = 0; kw < g.kw; ++kw, src += g.cin_g) {
              const int64_t iw = ow * g.stride_w - g.pad_left + kw * g.dil_w;
              if (ih < 0 || ih >= g.h || iw < 0 || iw >= g.w) continue;
              T* dst = dx + ((n * g.h + ih) * g.w + iw) * g.c + group * g.cin_g;
              for (int64_t ci = 0; ci < g.cin_g; ++ci) dst[ci] += src[ci];
            }
          }
        }
    }
  });
}

// Calls f(first image, images, group, column buffer) over chunks of images and groups;
// the buffer holds one chunk's im2col columns.
template <class T, class F>
void for_each_chunk(const ConvGeometry& g, F&& f) {
  const int64_t chunk = images_per_chunk(g);
  std::vector<T> col(static_cast<size_t>(chunk * g.oh * g.ow * g.kh * g.kw * g.cin_g));
  for (int64_t n0 = 0; n0 < g.n; n0 += chunk)
    for (int64_t grp = 0; grp < g.groups; ++grp) f(n0, std::min(chunk, g.n - n0), grp, col.data());
}

template <class T>
void conv_forward_gemm(const ConvGeometry& g, const T* x, const T* w, T* y) {
  const int64_t k = g.kh * g.kw * g.cin_g, cog = g.cout_g();
  for_each_chunk<T>(g, [&](int64_t n0, int64_t count, int64_t grp, T* col) {
    im2col(x, g, n0, count, grp, col);
    gemm<T>(false, false, count * g.oh * g.ow, cog, k, T(1), col, k, w + grp * cog, g.cout, T(0),
            y + n0 * g.oh * g.ow * g.cout + grp * cog, g.cout);
  });
}

template <class T>
void conv_backward_input_gemm(const ConvGeometry& g, const T* gy, const T* w, T* dx) {
  const int64_t k = g.kh * g.kw * g.cin_g, cog = g.cout_g();
  std::fill(dx, dx + g.n * g.h * g.w * g.c, T(0));
  for_each_chunk<T>(g, [&](int64_t n0, int64_t count, int64_t grp, T* col) {
    gemm<T>(false, true, count * g.oh * g.ow, k, cog, T(1), gy + n0 * g.oh * g.ow * g.cout + grp * cog, g.cout,
            w + grp * cog, g.cout, T(0), col, k);
    col2im_add(col, g, n0, count, grp, dx);
  });
}

template <class T>
void conv_backward_filter_gemm(const ConvGeometry& g, const T* x, const T* gy, T* dw) {
  const int64_t k = g.kh * g.kw * g.cin_g, cog = g.cout_g();
  std::fill(dw, dw + k * g.cout, T(0));
  for_each_chunk<T>(g, [&](int64_t n0, int64_t count, int64_t grp, T* col) {
    im2col(x, g, n0, count, grp, col);
    gemm<T>(true, false, k, cog, count * g.oh * g.ow, T(1), col, k, gy + n0 * g.oh * g.ow * g.cout + grp * cog, g.cout,
            T(1), dw + grp * cog, g.cout);
  });
}

// ---- one input channel per group (depthwise, with any channel multiplier m = Cout/C)
//
// The loops run one filter tap at a time over a block of a row's pixels. With channels
// last, a tap reads the input row shifted by whole pixels, so a block's pixels and channels
// are one flat loop that vectorises for any channel count (a loop over one pixel's 3 or 8
// channels barely does). Where the stride or the multiplier breaks that contiguity, the
// tap's input pixels are first gathered (each value repeated m times) into the output's
// layout. A block (about kDepthwiseBlock elements) stays in L1 while every tap adds into
// it. Every element still adds its taps in tap order, and the filter gradient its pixels
// in pixel order: the results equal a per-pixel loop's bit for bit.
constexpr int64_t kDepthwiseBlock = 512;

int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// The output columns ow in [first, last) of the window [lo, hi) whose tap kw reads an input
// column in [in_lo, in_hi) (within the input), and the input column the first one reads.
struct TapColumns {
  int64_t first, last, input;
  int64_t pixels() const { return last - first; }
};

TapColumns tap_columns(const kernels::DepthwiseGeometry& g, int64_t kw, int64_t lo, int64_t hi, int64_t in_lo,
                       int64_t in_hi) {
  const int64_t offset = kw * g.dil_w - g.pad_left;  // iw = ow · stride + offset
  const int64_t first = std::max(lo, -floor_div(offset - in_lo, g.stride_w));
  const int64_t last = std::min(hi, floor_div(in_hi - 1 - offset, g.stride_w) + 1);
  return {first, std::max(first, last), first * g.stride_w + offset};
}

// The filter repeated over `pixels` output pixels, per tap: tap t's row is
// tiles[(t·pixels + p)·Cout + co] = w[t·Cout + co], so one flat loop multiplies pixels by it.
template <class T>
std::vector<T> filter_rows(const kernels::DepthwiseGeometry& g, const T* w, int64_t pixels) {
  const int64_t row = pixels * g.cout();
  std::vector<T> tiles(static_cast<size_t>(g.kh * g.kw * row));
  for (int64_t t = 0; t < g.kh * g.kw; ++t)
    for (int64_t j = 0; j < row; ++j) tiles[static_cast<size_t>(t * row + j)] = w[t * g.cout() + j % g.cout()];
  return tiles;
}

// Output pixels per block of a row.
int64_t block_pixels(int64_t channels) { return std::max<int64_t>(1, kDepthwiseBlock / channels); }

// The input pixels tap `cols` reads from input row xr, in the output's layout (each input
// channel repeated m times): xr itself where stride 1 and m = 1 make it so, else gathered
// into `row`.
template <class T>
const T* tap_inputs(const kernels::DepthwiseGeometry& g, const T* xr, const TapColumns& cols, T* row) {
  if (g.stride_w == 1 && g.m == 1) return xr + cols.input * g.c;
  const int64_t c = g.c, m = g.m, step = g.stride_w * c;
  if (m == 1 && c >= 8) {  // a pixel's channels are a vector or more: copy them as a run
    for (int64_t p = 0; p < cols.pixels(); ++p) std::copy_n(xr + cols.input * c + p * step, c, row + p * c);
    return row;
  }
  // Else a channel at a time, strided on both sides: a copy call per pixel of 3 channels
  // costs more than the taps' arithmetic.
  for (int64_t i = 0; i < c; ++i)
    for (int64_t j = 0; j < m; ++j) {
      const T* __restrict from = xr + cols.input * c + i;
      T* __restrict to = row + i * m + j;
      for (int64_t p = 0; p < cols.pixels(); ++p) to[p * c * m] = from[p * step];
    }
  return row;
}

// Output row r (of the n·oh rows) a block of pixels at a time: starts(lo, hi) for each
// block [lo, hi) of its output columns, then add(tap, cols, in) for each tap of the block
// that reads inside the input, with the tap's input pixels in the output's layout.
template <class T, class Starts, class Add>
[[gnu::always_inline]] inline void for_each_block_tap(const kernels::DepthwiseGeometry& g, const T* x, int64_t r,
                                                      T* gathered, Starts&& starts, Add&& add) {
  const int64_t n = r / g.oh, oh = r % g.oh, block = block_pixels(g.cout());
  for (int64_t lo = 0; lo < g.ow; lo += block) {
    const int64_t hi = std::min(g.ow, lo + block);
    starts(lo, hi);
    for (int64_t kh = 0; kh < g.kh; ++kh) {
      const int64_t ih = oh * g.stride_h - g.pad_top + kh * g.dil_h;
      if (ih < 0 || ih >= g.h) continue;
      for (int64_t kw = 0; kw < g.kw; ++kw) {
        const TapColumns cols = tap_columns(g, kw, lo, hi, 0, g.w);
        add(kh * g.kw + kw, cols, tap_inputs(g, x + (n * g.h + ih) * g.w * g.c, cols, gathered));
      }
    }
  }
}

// Output rows [begin, end) of the n·oh rows of y.
template <class T>
AGILENN_CPU_CLONES void depthwise_forward_rows(const kernels::DepthwiseGeometry& g, const T* x, const T* tiles,
                                               T* y, int64_t begin, int64_t end) {
  const int64_t cout = g.cout(), block = block_pixels(cout);
  std::vector<T> gathered(static_cast<size_t>(block * cout));
  for (int64_t r = begin; r < end; ++r) {
    T* yr = y + r * g.ow * cout;
    for_each_block_tap(
        g, x, r, gathered.data(), [&](int64_t lo, int64_t hi) { std::fill(yr + lo * cout, yr + hi * cout, T(0)); },
        [&](int64_t tap, const TapColumns& cols, const T* __restrict in) {
          const T* __restrict wt = tiles + tap * block * cout;
          T* __restrict out = yr + cols.first * cout;
          for (int64_t j = 0; j < cols.pixels() * cout; ++j) out[j] += in[j] * wt[j];
        });
  }
}

// ---- wide channels (m = 1, a whole number of vectors per pixel, at least kWideVectors)
//
// There a block of the flat loops holds only a few pixels, and each of the window's taps
// loads and stores all of it. Instead, each pixel's window sum is kept in registers over
// the taps inside the input, in tap order: 3×3 filters a vector of channels at a time with
// the nine weights in registers too, others up to kWideVectors vectors at a time
// (independent sums, so the adds overlap) over the shared per-element iterators the CUDA
// kernels use. The same sums in the same order as the flat loops, so the same bits.
constexpr int64_t kWideVectors = 4;

template <class T>
using WideLanes [[gnu::vector_size(32)]] = T;

template <class T>
constexpr int64_t kWideLanes = 32 / sizeof(T);

template <class T>
bool wide_channels(const kernels::DepthwiseGeometry& g) {
  return g.m == 1 && g.c % kWideLanes<T> == 0 && g.c >= kWideVectors * kWideLanes<T>;
}

// out[0, vectors·lanes) = the sum, over the pairs (a, b) that each(f) passes to f in
// order, of a[·]·b[·].
template <int64_t vectors, class T, class Each>
[[gnu::always_inline]] inline void wide_window_sum(T* out, Each&& each) {
  using V = WideLanes<T>;
  constexpr int64_t lanes = kWideLanes<T>;
  V acc[vectors] = {};
  each([&](const T* a, const T* b) {
    for (int64_t v = 0; v < vectors; ++v) {
      V av, bv;
      std::memcpy(&av, a + v * lanes, sizeof(V));
      std::memcpy(&bv, b + v * lanes, sizeof(V));
      acc[v] += av * bv;
    }
  });
  std::memcpy(out, acc, sizeof(acc));
}

// The destination pixels [lo, hi) of a row of `count` whose 3-tap windows (columns
// b·stride + offset + kw·step) all lie in a source row of `width` pixels.
std::pair<int64_t, int64_t> interior3(int64_t count, int64_t stride, int64_t offset, int64_t step, int64_t width) {
  const auto inside = [&](int64_t b) {
    const int64_t first = b * stride + offset, last = first + 2 * step;
    return std::min(first, last) >= 0 && std::max(first, last) < width;
  };
  int64_t lo = 0;
  while (lo < count && !inside(lo)) ++lo;
  int64_t hi = lo;
  while (hi < count && inside(hi)) ++hi;
  return {lo, hi};
}

// Calls pixel(b, checked) for b in [0, count), checked a std::false_type where the taps
// need no test: all three tap rows inside the source and b in [lo, hi) (interior3).
template <class Pixel>
[[gnu::always_inline]] inline void each_3x3_pixel(int64_t count, bool all_rows, std::pair<int64_t, int64_t> interior,
                                                  Pixel&& pixel) {
  for (int64_t b = 0; b < count; ++b) {
    if (all_rows && b >= interior.first && b < interior.second) {
      pixel(b, std::false_type{});
    } else {
      pixel(b, std::true_type{});
    }
  }
}

// Rows first + kh·step (kh = 0, 1, 2) of image n of a source of `height` rows of
// `row_size` elements each, null where outside it.
template <class T>
std::array<const T*, 3> rows3(const T* src, int64_t n, int64_t height, int64_t row_size, int64_t first,
                              int64_t step) {
  std::array<const T*, 3> rows{};
  for (int64_t kh = 0; kh < 3; ++kh) {
    const int64_t h = first + kh * step;
    if (h >= 0 && h < height) rows[static_cast<size_t>(kh)] = src + (n * height + h) * row_size;
  }
  return rows;
}

// The input rows the 3×3 windows of output row r (of the n·oh rows) read.
template <class T>
std::array<const T*, 3> input_rows3(const kernels::DepthwiseGeometry& g, const T* x, int64_t r) {
  return rows3(x, r / g.oh, g.h, g.w * g.c, r % g.oh * g.stride_h - g.pad_top, g.dil_h);
}

// One destination row of `count` pixels of 3×3 windows: pixel b sums, in tap order, source
// rows src[kh] (null where outside the source) at column b·stride + offset + kw·step (taps
// outside a source row of `width` pixels skipped) times the weights w[kh·3 + kw]. A vector
// of channels at a time with its nine weights held in registers, so each tap costs one
// load; only the pixels outside [lo, hi) (interior3) and rows with a null src test taps.
template <class T>
[[gnu::always_inline]] inline void window3x3_row(const T* const* src, int64_t c, int64_t count, int64_t width,
                                                 int64_t stride, int64_t offset, int64_t step, const T* w, T* dst,
                                                 std::pair<int64_t, int64_t> interior) {
  using V = WideLanes<T>;
  constexpr int64_t lanes = kWideLanes<T>;
  const bool all_rows = src[0] && src[1] && src[2];
  for (int64_t c0 = 0; c0 < c; c0 += lanes) {
    V wv[9];
    for (int64_t t = 0; t < 9; ++t) std::memcpy(&wv[t], w + t * c + c0, sizeof(V));
    const auto pixel = [&](int64_t b, auto checked) {
      V acc = {};
      for (int64_t kh = 0; kh < 3; ++kh)
        for (int64_t kw = 0; kw < 3; ++kw) {
          const int64_t col = b * stride + offset + kw * step;
          if (checked && (!src[kh] || col < 0 || col >= width)) continue;
          V xv;
          std::memcpy(&xv, src[kh] + col * c + c0, sizeof(V));
          acc += xv * wv[kh * 3 + kw];
        }
      std::memcpy(dst + b * c + c0, &acc, sizeof(V));
    };
    each_3x3_pixel(count, all_rows, interior, pixel);
  }
}

// One destination row of wide_window_sum's over each(b, c, add), the pairs of pixel b's
// channels from c on, kWideVectors vectors at a time.
template <class T, class Each>
[[gnu::always_inline]] inline void wide_row(int64_t c, int64_t count, T* dst, Each&& each) {
  constexpr int64_t group = kWideVectors * kWideLanes<T>;
  for (int64_t b = 0; b < count; ++b) {
    int64_t c0 = 0;
    for (; c0 + group <= c; c0 += group)
      wide_window_sum<kWideVectors>(dst + b * c + c0, [&](auto add) { each(b, c0, add); });
    for (; c0 < c; c0 += kWideLanes<T>) wide_window_sum<1>(dst + b * c + c0, [&](auto add) { each(b, c0, add); });
  }
}

bool is_3x3(const kernels::DepthwiseGeometry& g) { return g.kh == 3 && g.kw == 3; }

// Output rows [begin, end) of the n·oh rows of y.
template <class T>
AGILENN_CPU_CLONES void depthwise_forward_wide_rows(const kernels::DepthwiseGeometry& g, const T* x, const T* w, T* y,
                                                    int64_t begin, int64_t end) {
  const int64_t offset = -g.pad_left;
  const auto interior = interior3(g.ow, g.stride_w, offset, g.dil_w, g.w);
  for (int64_t r = begin; r < end; ++r) {
    const int64_t n = r / g.oh, oh = r % g.oh;
    T* yr = y + r * g.ow * g.c;
    if (is_3x3(g)) {
      window3x3_row(input_rows3(g, x, r).data(), g.c, g.ow, g.w, g.stride_w, offset, g.dil_w, w, yr, interior);
      continue;
    }
    wide_row(g.c, g.ow, yr, [&](int64_t ow, int64_t c, auto add) {
      kernels::for_each_window_tap(g, oh, ow, [&](int64_t kh, int64_t kw, int64_t ih, int64_t iw) {
        add(x + ((n * g.h + ih) * g.w + iw) * g.c + c, w + (kh * g.kw + kw) * g.c + c);
      });
    });
  }
}

// Input rows [begin, end) of the n·h rows of dx, for stride 1: each input pixel gathers
// the output pixels whose windows read it, in the flat loops' tap order (tap (kh, kw) of
// input pixel (ih, iw) is output pixel (ih + pad − kh·dil, iw + pad − kw·dil)).
template <class T>
AGILENN_CPU_CLONES void depthwise_input_grad_wide_rows(const kernels::DepthwiseGeometry& g, const T* gy, const T* w,
                                                       T* dx, int64_t begin, int64_t end) {
  const int64_t offset = g.pad_left, step = -g.dil_w;
  const auto interior = interior3(g.w, 1, offset, step, g.ow);
  for (int64_t r = begin; r < end; ++r) {
    const int64_t n = r / g.h, ih = r % g.h;
    T* dxr = dx + r * g.w * g.c;
    if (is_3x3(g)) {  // the output rows whose windows read input row ih, in tap order
      const std::array<const T*, 3> gy_rows = rows3(gy, n, g.oh, g.ow * g.c, ih + g.pad_top, -g.dil_h);
      window3x3_row(gy_rows.data(), g.c, g.w, g.ow, 1, offset, step, w, dxr, interior);
      continue;
    }
    wide_row(g.c, g.w, dxr, [&](int64_t iw, int64_t c, auto add) {
      kernels::for_each_window_reading(g, ih, iw, [&](int64_t kh, int64_t kw, int64_t oh, int64_t ow) {
        add(gy + ((n * g.oh + oh) * g.ow + ow) * g.c + c, w + (kh * g.kw + kw) * g.c + c);
      });
    });
  }
}

template <class T>
void conv_forward_depthwise(const ConvGeometry& g, const T* x, const T* w, T* y) {
  const kernels::DepthwiseGeometry dg = kernels::depthwise_geometry(g);
  const int64_t rows = g.n * g.oh, work = rows * g.ow * g.cout * g.kh * g.kw;
  if (wide_channels<T>(dg)) {
    parallel_for(rows, work, [&](int64_t begin, int64_t end) { depthwise_forward_wide_rows(dg, x, w, y, begin, end); });
    return;
  }
  const std::vector<T> tiles = filter_rows(dg, w, block_pixels(dg.cout()));
  parallel_for(rows, work,
               [&](int64_t begin, int64_t end) { depthwise_forward_rows(dg, x, tiles.data(), y, begin, end); });
}

// Input rows [begin, end) of the n·h rows of dx, a block of columns at a time: tap
// (kh, kw) adds, to the input pixels of the block it read, the output row's gradient times
// its weight (summed over the m outputs of each channel).
template <class T>
AGILENN_CPU_CLONES void depthwise_input_grad_rows(const kernels::DepthwiseGeometry& g, const T* gy,
                                                  const T* tiles, T* dx, int64_t begin, int64_t end) {
  const int64_t cout = g.cout(), m = g.m, block = block_pixels(g.c);
  std::vector<T> products(static_cast<size_t>(block * cout));
  for (int64_t r = begin; r < end; ++r) {
    const int64_t n = r / g.h, ih = r % g.h;
    T* dxr = dx + r * g.w * g.c;
    for (int64_t lo = 0; lo < g.w; lo += block) {
      const int64_t hi = std::min(g.w, lo + block);
      std::fill(dxr + lo * g.c, dxr + hi * g.c, T(0));
      for (int64_t kh = 0; kh < g.kh; ++kh) {
        const int64_t th = ih + g.pad_top - kh * g.dil_h;
        if (th < 0 || th % g.stride_h != 0 || th / g.stride_h >= g.oh) continue;
        const T* gyr = gy + (n * g.oh + th / g.stride_h) * g.ow * cout;
        for (int64_t kw = 0; kw < g.kw; ++kw) {
          const TapColumns cols = tap_columns(g, kw, 0, g.ow, lo, hi);
          const int64_t len = cols.pixels() * cout;
          const T* __restrict gp = gyr + cols.first * cout;
          const T* __restrict wt = tiles + (kh * g.kw + kw) * block * cout;
          T* __restrict out = dxr + cols.input * g.c;
          if (g.stride_w == 1 && m == 1) {
            for (int64_t j = 0; j < len; ++j) out[j] += gp[j] * wt[j];
            continue;
          }
          T* __restrict p = products.data();
          for (int64_t j = 0; j < len; ++j) p[j] = gp[j] * wt[j];
          for (int64_t q = 0; q < cols.pixels(); ++q) {
            const T* __restrict pq = p + q * cout;
            T* __restrict dxp = out + q * g.stride_w * g.c;
            if (m == 1) {
              for (int64_t c = 0; c < g.c; ++c) dxp[c] += pq[c];
              continue;
            }
            for (int64_t c = 0; c < g.c; ++c) {
              T s = 0;
              for (int64_t j = 0; j < m; ++j) s += pq[c * m + j];
              dxp[c] += s;
            }
          }
        }
      }
    }
  }
}

template <class T>
void conv_backward_input_depthwise(const ConvGeometry& g, const T* gy, const T* w, T* dx) {
  const kernels::DepthwiseGeometry dg = kernels::depthwise_geometry(g);
  const int64_t rows = g.n * g.h, work = rows * g.w * g.cout * g.kh * g.kw;
  // Strided, an input pixel's window is sparse and the flat loops' pass per tap is faster.
  if (wide_channels<T>(dg) && g.stride_h == 1 && g.stride_w == 1) {
    parallel_for(rows, work,
                 [&](int64_t begin, int64_t end) { depthwise_input_grad_wide_rows(dg, gy, w, dx, begin, end); });
    return;
  }
  const std::vector<T> tiles = filter_rows(dg, w, block_pixels(dg.c));
  parallel_for(rows, work,
               [&](int64_t begin, int64_t end) { depthwise_input_grad_rows(dg, gy, tiles.data(), dx, begin, end); });
}

// Adds output rows [first, end) (of the n·oh rows of gy) into the filter gradient acc, a
// tap at a time over a block of pixels.
template <class T>
AGILENN_CPU_CLONES void depthwise_filter_grad_rows(const kernels::DepthwiseGeometry& g, const T* x, const T* gy,
                                                   T* acc, int64_t first, int64_t end) {
  const int64_t cout = g.cout();
  std::vector<T> gathered(static_cast<size_t>(block_pixels(cout) * cout));
  for (int64_t r = first; r < end; ++r) {
    const T* gyr = gy + r * g.ow * cout;
    for_each_block_tap(
        g, x, r, gathered.data(), [](int64_t, int64_t) {},
        [&](int64_t tap, const TapColumns& cols, const T* __restrict in) {
          const T* __restrict gp = gyr + cols.first * cout;
          T* __restrict ap = acc + tap * cout;
          for (int64_t p = 0; p < cols.pixels(); ++p)
            for (int64_t co = 0; co < cout; ++co) ap[co] += in[p * cout + co] * gp[p * cout + co];
        });
  }
}

// The same for 3×3 filters over wide channels: a vector of channels at a time, the nine
// taps' sums held in registers across a row's pixels. Each tap still adds the pixels in
// order, skipping those whose tap reads outside the input, so the sums are the flat loop's.
template <class T>
AGILENN_CPU_CLONES void depthwise_filter_grad_3x3_rows(const kernels::DepthwiseGeometry& g, const T* x, const T* gy,
                                                       T* acc, int64_t first, int64_t end) {
  using V = WideLanes<T>;
  constexpr int64_t lanes = kWideLanes<T>;
  const int64_t c = g.c;
  const auto interior = interior3(g.ow, g.stride_w, -g.pad_left, g.dil_w, g.w);
  for (int64_t r = first; r < end; ++r) {
    const std::array<const T*, 3> rows3 = input_rows3(g, x, r);
    const bool all_rows = rows3[0] && rows3[1] && rows3[2];
    const T* gyr = gy + r * g.ow * c;
    for (int64_t c0 = 0; c0 < c; c0 += lanes) {
      V sums[9];
      for (int64_t t = 0; t < 9; ++t) std::memcpy(&sums[t], acc + t * c + c0, sizeof(V));
      const auto pixel = [&](int64_t ow, auto checked) {
        V gv;
        std::memcpy(&gv, gyr + ow * c + c0, sizeof(V));
        for (int64_t kh = 0; kh < 3; ++kh)
          for (int64_t kw = 0; kw < 3; ++kw) {
            const int64_t iw = ow * g.stride_w - g.pad_left + kw * g.dil_w;
            const T* row = rows3[static_cast<size_t>(kh)];
            if (checked && (!row || iw < 0 || iw >= g.w)) continue;
            V xv;
            std::memcpy(&xv, row + iw * c + c0, sizeof(V));
            sums[kh * 3 + kw] += xv * gv;
          }
      };
      each_3x3_pixel(g.ow, all_rows, interior, pixel);
      for (int64_t t = 0; t < 9; ++t) std::memcpy(acc + t * c + c0, &sums[t], sizeof(V));
    }
  }
}

// Partial sums over a fixed number of row blocks, added in order: the result does not
// depend on the thread count.
template <class T>
void conv_backward_filter_depthwise(const ConvGeometry& g, const T* x, const T* gy, T* dw) {
  const kernels::DepthwiseGeometry dg = kernels::depthwise_geometry(g);
  const int64_t rows = g.n * g.oh, wsize = g.kh * g.kw * g.cout;
  const bool wide_3x3 = wide_channels<T>(dg) && is_3x3(dg);
  reduce_row_blocks(
      rows, wsize, rows * g.ow * wsize, T(0), [](T a, T b) { return a + b; },
      [&](T* acc, int64_t first, int64_t end) {
        if (wide_3x3) {
          depthwise_filter_grad_3x3_rows(dg, x, gy, acc, first, end);
        } else {
          depthwise_filter_grad_rows(dg, x, gy, acc, first, end);
        }
      },
      dw);
}

// A pointwise convolution's filter gradient Xᵀ·GY. With few input channels (fewer than
// kFewChannels) over at least kMinPixelBlocks blocks of kPointwisePixels pixels, it is
// summed over the pixels (the long side) in reduce_row_blocks' fixed blocks: each block's
// product on one thread, the blocks added in order. Neither choice depends on the thread
// count, nor do the sums. gemm's split by rows of the C × Cout result would hand each of
// two threads a slice of under 32 rows, which OpenBLAS multiplies slowly (tiny/32's
// 16 -> 64 layer: 316 -> 98 us). With many channels or few pixels the row split is as
// fast or faster, and each block's partial C × Cout sum would cost more than it saves
// (paper/8's 320 -> 1280 head over 128 pixels: 676 -> 2438 us).
constexpr int64_t kFewChannels = 64, kPointwisePixels = 256, kMinPixelBlocks = 4;

template <class T>
void pointwise_filter_grad(const ConvGeometry& g, const T* x, const T* gy, T* dw) {
  const int64_t pixels = g.n * g.h * g.w, units = pixels / kPointwisePixels;
  if (g.c >= kFewChannels || units < kMinPixelBlocks) {
    gemm<T>(true, false, g.c, g.cout, pixels, T(1), x, g.c, gy, g.cout, T(0), dw, g.cout);
    return;
  }
  reduce_row_blocks(
      units, g.c * g.cout, pixels * g.c * g.cout, T(0), [](T a, T b) { return a + b; },
      [&](T* acc, int64_t first, int64_t end) {
        const int64_t begin = pixels * first / units, count = pixels * end / units - begin;
        gemm<T>(true, false, g.c, g.cout, count, T(1), x + begin * g.c, g.c, gy + begin * g.cout, g.cout, T(1), acc,
                g.cout);
      },
      dw);
}

// A 1x1, stride-1, unpadded, ungrouped convolution is a GEMM over pixels: no im2col.
bool is_pointwise(const ConvGeometry& g) {
  return g.kh == 1 && g.kw == 1 && g.stride_h == 1 && g.stride_w == 1 && g.pad_top == 0 && g.pad_left == 0 &&
         g.groups == 1 && g.oh == g.h && g.ow == g.w;
}

}  // namespace

void register_conv2d(KernelTable& t) {
  t.add("conv2d", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    const ConvGeometry g = geometry(node, in[0].shape(), in[1].shape());
    dispatch_float(out.dtype(), node, [&](auto tag) {
      using T = decltype(tag);
      const int64_t pixels = g.n * g.h * g.w;
      if (is_pointwise(g))
        gemm<T>(false, false, pixels, g.cout, g.c, T(1), in[0].data<T>(), g.c, in[1].data<T>(), g.cout, T(0),
                out.data<T>(), g.cout);
      else if (kernels::is_depthwise(g)) conv_forward_depthwise(g, in[0].data<T>(), in[1].data<T>(), out.data<T>());
      else conv_forward_gemm(g, in[0].data<T>(), in[1].data<T>(), out.data<T>());
    });
  });
  t.add("conv2d_backward_input", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    const ConvGeometry g = geometry(node, node.attrs.ints("input_shape"), in[1].shape());
    dispatch_float(out.dtype(), node, [&](auto tag) {
      using T = decltype(tag);
      if (is_pointwise(g))
        gemm<T>(false, true, g.n * g.h * g.w, g.c, g.cout, T(1), in[0].data<T>(), g.cout, in[1].data<T>(), g.cout,
                T(0), out.data<T>(), g.c);
      else if (kernels::is_depthwise(g))
        conv_backward_input_depthwise(g, in[0].data<T>(), in[1].data<T>(), out.data<T>());
      else conv_backward_input_gemm(g, in[0].data<T>(), in[1].data<T>(), out.data<T>());
    });
  });
  t.add("conv2d_backward_filter", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    const ConvGeometry g = geometry(node, in[0].shape(), node.attrs.ints("filter_shape"));
    dispatch_float(out.dtype(), node, [&](auto tag) {
      using T = decltype(tag);
      if (is_pointwise(g))
        pointwise_filter_grad(g, in[0].data<T>(), in[1].data<T>(), out.data<T>());
      else if (kernels::is_depthwise(g))
        conv_backward_filter_depthwise(g, in[0].data<T>(), in[1].data<T>(), out.data<T>());
      else conv_backward_filter_gemm(g, in[0].data<T>(), in[1].data<T>(), out.data<T>());
    });
  });
}

}  // namespace agilenn::cpu
