// reshape, broadcast_to, transpose, slice, pad, concat on the GPU (the CPU's are in
// kernels/cpu/layout.cpp). They only move elements, so they dispatch on the element's size,
// and each is one strided copy (strided.cuh) with source and destination strides chosen
// to express the op.
#include "engine/ir/shape_util.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/strided.cuh"

namespace agilenn::cuda {
namespace {

// ---- kernels (the walk itself is strided_kernel)

template <class E>
struct CopyElement {
  const E* src;
  E* dst;
  __device__ void operator()(int64_t, const int64_t (&o)[2]) const { dst[o[1]] = src[o[0]]; }
};

// ---- launchers


// dst[dst_base + dst_off(i)] = src[src_base + src_off(i)] over every index i of `shape`.
void strided_copy(const Node& node, const Tensor& src, int64_t src_base, const std::vector<int64_t>& src_strides,
                  Tensor& dst, int64_t dst_base, const std::vector<int64_t>& dst_strides, const Shape& shape) {
  const auto ix = make_strided_index<2>(node, shape, {src_strides, dst_strides});
  dispatch_bytes(src.dtype(), [&](auto tag) {
    using E = decltype(tag);
    launch_strided(numel(shape), ix, CopyElement<E>{src.data<E>() + src_base, dst.data<E>() + dst_base});
  });
}

void zero(Tensor& t) {
  if (t.nbytes() == 0) return;
  AGILENN_CUDA_CHECK(cudaMemsetAsync(t.raw(), 0, t.nbytes(), stream()));
}

}  // namespace

// ---- registration

void register_layout(KernelTable& t) {
  t.add("reshape", [](const Node&, std::span<const Tensor> in, Tensor& out) {
    if (out.nbytes() == 0 || out.raw() == in[0].raw()) return;
    AGILENN_CUDA_CHECK(
        cudaMemcpyAsync(out.raw(), in[0].raw(), out.nbytes(), cudaMemcpyDeviceToDevice, stream()));
  });
  t.add("broadcast_to", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    strided_copy(node, in[0], 0, broadcast_strides(in[0].shape(), out.shape()), out, 0,
                 contiguous_strides(out.shape()), out.shape());
  });
  t.add("transpose", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    const auto& perm = node.attrs.ints("perm");
    const auto in_strides = contiguous_strides(in[0].shape());
    std::vector<int64_t> src(perm.size());
    for (size_t d = 0; d < perm.size(); ++d) src[d] = in_strides[static_cast<size_t>(perm[d])];
    strided_copy(node, in[0], 0, src, out, 0, contiguous_strides(out.shape()), out.shape());
  });
  t.add("slice", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    if (out.numel() == 0) return;
    const auto in_strides = contiguous_strides(in[0].shape());
    strided_copy(node, in[0], offset_of(node.attrs.ints("begin"), in_strides), in_strides, out, 0,
                 contiguous_strides(out.shape()), out.shape());
  });
  t.add("pad", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    zero(out);
    if (in[0].numel() == 0) return;
    const auto out_strides = contiguous_strides(out.shape());
    strided_copy(node, in[0], 0, contiguous_strides(in[0].shape()), out,
                 offset_of(node.attrs.ints("before"), out_strides), out_strides, in[0].shape());
  });
  t.add("concat", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    const auto axis = static_cast<size_t>(normalize_axis(node.attrs.i("axis"), out.rank()));
    const auto out_strides = contiguous_strides(out.shape());
    int64_t offset = 0;
    for (const Tensor& x : in) {
      if (x.numel() > 0)
        strided_copy(node, x, 0, contiguous_strides(x.shape()), out, offset * out_strides[axis], out_strides,
                     x.shape());
      offset += x.dim(axis);
    }
  });
}

}  // namespace agilenn::cuda
