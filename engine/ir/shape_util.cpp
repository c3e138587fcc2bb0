#include "engine/ir/shape_util.h"

#include <algorithm>

#include "engine/core/error.h"

namespace agilenn {

int64_t normalize_axis(int64_t axis, size_t rank) {
  const auto r = static_cast<int64_t>(rank);
  AGILENN_CHECK(axis >= -r && axis < r, "axis " << axis << " out of range for rank " << rank);
  return axis < 0 ? axis + r : axis;
}

std::vector<int64_t> normalize_axes(const std::vector<int64_t>& axes, size_t rank) {
  std::vector<int64_t> out;
  if (axes.empty()) {
    for (size_t i = 0; i < rank; ++i) out.push_back(static_cast<int64_t>(i));
    return out;
  }
  for (int64_t a : axes) out.push_back(normalize_axis(a, rank));
  std::sort(out.begin(), out.end());
  AGILENN_CHECK(std::adjacent_find(out.begin(), out.end()) == out.end(), "repeated axis");
  return out;
}

Shape broadcast_shapes(const Shape& a, const Shape& b) {
  const size_t r = std::max(a.size(), b.size());
  Shape out(r);
  for (size_t i = 0; i < r; ++i) {
    const int64_t da = i < r - a.size() ? 1 : a[i - (r - a.size())];
    const int64_t db = i < r - b.size() ? 1 : b[i - (r - b.size())];
    AGILENN_CHECK(da == db || da == 1 || db == 1,
                  "shapes " << shape_str(a) << " and " << shape_str(b) << " do not broadcast");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

Shape reduced_shape(const Shape& in, const std::vector<int64_t>& axes, bool keepdims) {
  Shape out;
  for (size_t i = 0; i < in.size(); ++i) {
    const bool reduced = std::find(axes.begin(), axes.end(), static_cast<int64_t>(i)) != axes.end();
    if (!reduced) out.push_back(in[i]);
    else if (keepdims) out.push_back(1);
  }
  return out;
}

bool leading_axes(const std::vector<int64_t>& axes, size_t rank) {
  for (size_t i = 0; i < axes.size(); ++i)
    if (axes[i] != static_cast<int64_t>(i)) return false;
  return axes.size() < rank;
}

ConvGeometry conv_geometry(const Shape& x, const Shape& w, const std::vector<int64_t>& stride,
                           const std::vector<int64_t>& dilation, const std::vector<int64_t>& pads,
                           int64_t groups) {
  AGILENN_CHECK(x.size() == 4, "input must be NHWC (rank 4), got " << shape_str(x));
  AGILENN_CHECK(w.size() == 4, "filter must be [KH,KW,C/groups,Cout], got " << shape_str(w));
  AGILENN_CHECK(stride.size() == 2 && dilation.size() == 2 && pads.size() == 4,
                "stride and dilation need 2 values, pads 4");
  AGILENN_CHECK(groups >= 1 && x[3] % groups == 0 && w[3] % groups == 0,
                "groups=" << groups << " must divide input channels " << x[3] << " and output channels "
                          << w[3]);
  AGILENN_CHECK(w[2] * groups == x[3], "filter expects " << w[2] * groups << " input channels, input has "
                                                          << x[3]);
  for (int64_t v : stride) AGILENN_CHECK(v >= 1, "stride must be positive");
  for (int64_t v : dilation) AGILENN_CHECK(v >= 1, "dilation must be positive");
  for (int64_t v : pads) AGILENN_CHECK(v >= 0, "padding must be non-negative");
  ConvGeometry g{};
  g.n = x[0], g.h = x[1], g.w = x[2], g.c = x[3];
  g.kh = w[0], g.kw = w[1], g.cin_g = w[2], g.cout = w[3];
  g.stride_h = stride[0], g.stride_w = stride[1], g.dil_h = dilation[0], g.dil_w = dilation[1];
  g.pad_top = pads[0], g.pad_left = pads[2];
  g.groups = groups;
  const int64_t eff_h = g.h + pads[0] + pads[1] - g.dil_h * (g.kh - 1) - 1;
  const int64_t eff_w = g.w + pads[2] + pads[3] - g.dil_w * (g.kw - 1) - 1;
  AGILENN_CHECK(eff_h >= 0 && eff_w >= 0, "filter larger than padded input");
  g.oh = eff_h / g.stride_h + 1;
  g.ow = eff_w / g.stride_w + 1;
  return g;
}

std::array<int64_t, 2> same_padding(int64_t in, int64_t kernel, int64_t stride, int64_t dilation) {
  const int64_t out = (in + stride - 1) / stride;
  const int64_t total = std::max<int64_t>((out - 1) * stride + (kernel - 1) * dilation + 1 - in, 0);
  return {total / 2, total - total / 2};
}

}  // namespace agilenn
