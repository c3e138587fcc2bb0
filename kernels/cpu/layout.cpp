// broadcast_to, reshape, transpose, slice, pad, concat: data movement, any dtype.
#include <cstring>

#include "engine/ir/shape_util.h"
#include "kernels/cpu/cpu_kernels.h"

namespace agilenn::cpu {
namespace {


// dst[dst_base + dst_off(i)] = src[src_base + src_off(i)] over every index i of `shape`.
void strided_copy(const Tensor& src, int64_t src_base, const std::vector<int64_t>& src_strides, Tensor& dst,
                  int64_t dst_base, const std::vector<int64_t>& dst_strides, const Shape& shape) {
  dispatch_bytes(src.dtype(), [&](auto tag) {
    using E = decltype(tag);
    const E* s = src.data<E>() + src_base;
    E* d = dst.data<E>() + dst_base;
    broadcast_loop<2>(shape, {src_strides, dst_strides},
                      [&](int64_t, const std::array<int64_t, 2>& o) { d[o[1]] = s[o[0]]; });
  });
}

}  // namespace

void register_layout(KernelTable& t) {
  t.add("reshape", [](const Node&, std::span<const Tensor> in, Tensor& out) {
    std::memcpy(out.raw(), in[0].raw(), out.nbytes());
  });
  t.add("broadcast_to", [](const Node&, std::span<const Tensor> in, Tensor& out) {
    strided_copy(in[0], 0, broadcast_strides(in[0].shape(), out.shape()), out, 0, contiguous_strides(out.shape()),
                 out.shape());
  });
  t.add("transpose", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    const auto& perm = node.attrs.ints("perm");
    const auto in_strides = contiguous_strides(in[0].shape());
    std::vector<int64_t> src(perm.size());
    for (size_t d = 0; d < perm.size(); ++d) src[d] = in_strides[static_cast<size_t>(perm[d])];
    strided_copy(in[0], 0, src, out, 0, contiguous_strides(out.shape()), out.shape());
  });
  t.add("slice", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    const auto in_strides = contiguous_strides(in[0].shape());
    strided_copy(in[0], offset_of(node.attrs.ints("begin"), in_strides), in_strides, out, 0,
                 contiguous_strides(out.shape()), out.shape());
  });
  t.add("pad", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    std::memset(out.raw(), 0, out.nbytes());
    const auto out_strides = contiguous_strides(out.shape());
    strided_copy(in[0], 0, contiguous_strides(in[0].shape()), out, offset_of(node.attrs.ints("before"), out_strides),
                 out_strides, in[0].shape());
  });
  t.add("concat", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    const auto axis = static_cast<size_t>(normalize_axis(node.attrs.i("axis"), out.rank()));
    const auto out_strides = contiguous_strides(out.shape());
    int64_t offset = 0;
    for (const Tensor& x : in) {
      strided_copy(x, 0, contiguous_strides(x.shape()), out, offset * out_strides[axis], out_strides, x.shape());
      offset += x.dim(axis);
    }
  });
}

}  // namespace agilenn::cpu
