// The hand-written kernels' benchmark cases, shared by the CPU (cpu_kernels.cpp) and the
// GPU (cuda_kernels.cpp) suites: the shapes the tiny and paper presets run them at, one
// large shape, and each kernel's op graph beside its baseline's.
//
// Shapes (DESIGN.md §1, engine/models/presets.cpp): features are 16×16×10 (tiny, K = 2)
// and 32×32×24 (paper, K = 5); the quantizer sees the remote channels (8 and 19) against
// 8 centroids. Depthwise 3×3 convolutions: the feature extractor's first one on the image
// (tiny 32×32×3 stride 2, paper 96×96×3 stride 3) and the widest expanded one of the
// remote predictor (tiny 16×16×32 stride 2, paper 32×32×144 stride 1). Batches: tiny 32,
// paper 8 on the CPU (the sizes of its step benchmarks) and 64 on the GPU (DESIGN §8).
#pragma once

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "bench/common.h"
#include "engine/autodiff/fused_vjps.h"
#include "engine/core/error.h"
#include "engine/ir/ops.h"

namespace agilenn::bench {

struct Input {
  Shape shape;
  float lo = -1.0f, hi = 1.0f;  // uniform range of its random values (int32: [lo, hi))
  DType dtype = DType::f32;      // f32 or i32
};

// A random tensor for the input (seeded): uniform floats, or integers in [lo, hi).
inline Tensor random_input(const Input& in, uint64_t seed) {
  Tensor t = random_tensor(in.shape, seed, in.lo, in.hi);
  if (in.dtype == DType::f32) return t;
  AGILENN_CHECK(in.dtype == DType::i32, "bench input: f32 or i32, not " << dtype_name(in.dtype));
  Tensor out = Tensor::zeros(in.shape, DType::i32);
  for (int64_t i = 0; i < t.numel(); ++i)
    out.data<int32_t>()[i] = std::min(static_cast<int32_t>(std::floor(t.data<float>()[i])), static_cast<int32_t>(in.hi) - 1);
  return out;
}
inline double input_bytes(const Input& in) {
  return static_cast<double>(numel(in.shape)) * static_cast<double>(dtype_size(in.dtype));
}

// One benchmarked computation: leaves x0, x1, ... of `inputs`, the graph `build` makes
// over them, and the work charged to one run.
struct OpCase {
  std::vector<Input> inputs;
  std::function<Value(Graph&, const std::vector<Value>&)> build;
  Work work;
  std::string label;
};

struct DepthwiseShape {
  std::string name;  // preset.layer, or "large"
  int64_t n, h, w, c, stride;
};

enum class ConvPass { forward, data_grad, filter_grad };
inline const char* pass_name(ConvPass p) {
  return p == ConvPass::forward ? "fwd" : p == ConvPass::data_grad ? "dgrad" : "wgrad";
}

struct QuantizeShape {
  std::string name;
  Shape x;
  int64_t centroids = 8;
};

struct AttributionShape {
  std::string name;
  Shape features;
  int64_t local_channels;
};

inline std::vector<DepthwiseShape> depthwise_shapes(bool gpu) {
  const int64_t paper = gpu ? 64 : 8, large = gpu ? 64 : 16;
  return {{"tiny.fe", 32, 32, 32, 3, 2},
          {"tiny.rp", 32, 16, 16, 32, 2},
          {"tiny.rp16", 32, 14, 14, 16, 1},  // the tiny preset's stride-1 depthwise layers with few channels
          {"paper.fe", paper, 96, 96, 3, 3},
          {"paper.rp", paper, 32, 32, 144, 1},
          {"large", large, 56, 56, 144, 1}};
}

inline std::vector<QuantizeShape> quantize_shapes(bool gpu) {
  const int64_t paper = gpu ? 64 : 8;
  return {{"tiny", {32, 16, 16, 8}},
          {"paper", {paper, 32, 32, 19}},
          {"large", gpu ? Shape{64, 56, 56, 128} : Shape{16, 56, 56, 64}}};
}

inline std::vector<AttributionShape> attribution_shapes(bool gpu) {
  const int64_t paper = gpu ? 64 : 8;
  return {{"tiny", {32, 16, 16, 10}, 2},
          {"paper", {paper, 32, 32, 24}, 5},
          {"large", gpu ? Shape{64, 56, 56, 128} : Shape{16, 56, 56, 64}, gpu ? 26 : 13}};
}

inline ops::Conv2dOptions same_padding_conv(int64_t stride, int64_t groups) {
  ops::Conv2dOptions o;
  o.padding = ops::Padding::same;
  o.stride = {stride, stride};
  o.groups = groups;
  return o;
}

inline std::string shape_label(const Shape& s) { return shape_str(s); }

// Output side of a 3×3 "same" convolution.
inline int64_t same_out(int64_t in, int64_t stride) { return (in + stride - 1) / stride; }

// The attrs a conv2d node gets for x and a filter of `filter` shape (pads, groups, ...).
inline Attrs conv_attrs(const Shape& x, const Shape& filter, int64_t stride, int64_t groups) {
  Graph probe;
  Value xv = ops::leaf(probe, "x", x, DType::f32), wv = ops::leaf(probe, "w", filter, DType::f32);
  return ops::conv2d(xv, wv, same_padding_conv(stride, groups)).node().attrs;
}

// The depthwise 3×3 "same" convolution's pass. dense = false: the op with groups = C,
// which the backends run with their hand-written depthwise kernel. dense = true: the CPU
// baseline, the same computation as an ungrouped convolution whose [3,3,C,C] filter would
// be block-diagonal (im2col + GEMM, the path a library without a depthwise kernel takes).
// Both are charged the depthwise pass's own work.
inline OpCase depthwise_case(const DepthwiseShape& d, ConvPass pass, bool dense) {
  const Shape x{d.n, d.h, d.w, d.c};
  const Shape y{d.n, same_out(d.h, d.stride), same_out(d.w, d.stride), d.c};
  const Shape filter = dense ? Shape{3, 3, d.c, d.c} : Shape{3, 3, 1, d.c};
  const int64_t groups = dense ? 1 : d.c;
  const Attrs attrs = conv_attrs(x, filter, d.stride, groups);
  const double fx = static_cast<double>(numel(x)), fy = static_cast<double>(numel(y)), fw = 9.0 * static_cast<double>(d.c);
  OpCase c;
  c.work.flops = 2.0 * 9.0 * fy;
  c.label = shape_str(x) + " s" + std::to_string(d.stride);
  switch (pass) {
    case ConvPass::forward:
      c.inputs = {{x}, {filter}};
      c.build = [stride = d.stride, groups](Graph&, const std::vector<Value>& v) {
        return ops::conv2d(v[0], v[1], same_padding_conv(stride, groups));
      };
      c.work.bytes = 4.0 * (fx + fw + fy);
      break;
    case ConvPass::data_grad:
      c.inputs = {{y}, {filter}};
      c.build = [attrs, x](Graph&, const std::vector<Value>& v) { return ops::conv2d_backward_input(v[0], v[1], attrs, x); };
      c.work.bytes = 4.0 * (fy + fw + fx);
      break;
    case ConvPass::filter_grad:
      c.inputs = {{x}, {y}};
      c.build = [attrs, filter](Graph&, const std::vector<Value>& v) {
        return ops::conv2d_backward_filter(v[0], v[1], attrs, filter);
      };
      c.work.bytes = 4.0 * (fx + fy + fw);
      break;
  }
  return c;
}

// x.shape + [J] squared distances, argmin, gather: the fewest primitive ops whose value is
// the quantizer's forward value (the private centroid_distances of engine/ir/ops.cpp).
inline Value quantize_unfused(const Value& x, const Value& centroids) {
  Shape expanded = x.shape();
  expanded.push_back(1);
  Value d = ops::reshape(x, expanded) - centroids;
  return ops::gather(centroids, ops::argmin(d * d, -1), 0);
}

enum class QuantizeImpl { kernel, unfused, reference };
inline const char* impl_name(QuantizeImpl i) {
  return i == QuantizeImpl::kernel ? "kernel" : i == QuantizeImpl::unfused ? "unfused" : "reference";
}

// kernel: the fused quantize op. unfused: quantize_unfused. reference: the decomposition
// the op's derivatives are defined by (ops::quantize_reference: soft + stop_gradient(hard
// - soft)), which is what a step without the fused op would run forward.
inline OpCase quantize_case(const QuantizeShape& q, QuantizeImpl impl) {
  OpCase c;
  // Features after ReLU6 and centroids 6·sigmoid(raw) both lie in [0, 6].
  c.inputs = {{q.x, 0.0f, 6.0f}, {{q.centroids}, 0.25f, 5.75f}};
  c.build = [impl](Graph&, const std::vector<Value>& v) {
    switch (impl) {
      case QuantizeImpl::kernel: return ops::quantize(v[0], v[1]);
      case QuantizeImpl::unfused: return quantize_unfused(v[0], v[1]);
      case QuantizeImpl::reference: break;
    }
    return ops::quantize_reference(v[0], v[1]);
  };
  const double n = static_cast<double>(numel(q.x)), j = static_cast<double>(q.centroids);
  c.work.bytes = 4.0 * (2.0 * n + j);
  c.work.flops = 3.0 * j * n;  // per centroid: subtract, square, compare
  c.label = shape_str(q.x) + " J=" + std::to_string(q.centroids);
  return c;
}

// kernel: the fused attribution_stats op; unfused: ops::attribution_stats_reference.
inline OpCase attribution_case(const AttributionShape& a, bool fused) {
  OpCase c;
  c.inputs = {{a.features}, {a.features}};
  c.build = [fused, k = a.local_channels](Graph&, const std::vector<Value>& v) {
    return fused ? ops::attribution_stats(v[0], v[1], k) : ops::attribution_stats_reference(v[0], v[1], k);
  };
  const double n = static_cast<double>(numel(a.features)), b = static_cast<double>(a.features[0]);
  c.work.bytes = 4.0 * (2.0 * n + 3.0 * b);
  c.work.flops = 4.0 * n;  // multiply, absolute value, sum, min or max
  c.label = shape_str(a.features) + " K=" + std::to_string(a.local_channels);
  return c;
}

// quantize's vjp (wrt 0: x, 1: the centroids), seeded by g shaped like x. kernel: the
// fused quantize_backward op; unfused: quantize_backward_reference (the partial vjp of
// quantize_soft, as the autodiff writes it out).
inline OpCase quantize_backward_case(const QuantizeShape& q, int64_t wrt, bool fused) {
  OpCase c;
  c.inputs = {{q.x, 0.0f, 6.0f}, {{q.centroids}, 0.25f, 5.75f}, {q.x}};
  c.build = [wrt, fused](Graph&, const std::vector<Value>& v) {
    return fused ? ops::quantize_backward(v[0], v[1], v[2], wrt) : quantize_backward_reference(v[0], v[1], v[2], wrt);
  };
  const double n = static_cast<double>(numel(q.x)), j = static_cast<double>(q.centroids);
  c.work.bytes = 4.0 * (2.0 * n + j + (wrt == 0 ? n : j));
  // Per element and centroid: distance, square, exp, the softmax's two sums, the chain
  // rule's products; exp counted as one.
  c.work.flops = 10.0 * j * n;
  c.label = shape_str(q.x) + " J=" + std::to_string(q.centroids) + (wrt == 0 ? " d/dx" : " d/dc");
  return c;
}

// attribution_stats' vjp (wrt 0: delta, 1: a), seeded by g [B,3]. unfused:
// attribution_stats_backward_reference.
inline OpCase attribution_backward_case(const AttributionShape& a, int64_t wrt, bool fused) {
  OpCase c;
  const Shape g{a.features[0], 3};
  c.inputs = {{a.features}, {a.features}, {g}};
  c.build = [wrt, fused, k = a.local_channels](Graph&, const std::vector<Value>& v) {
    return fused ? ops::attribution_stats_backward(v[0], v[1], v[2], k, wrt)
                 : attribution_stats_backward_reference(v[0], v[1], v[2], k, wrt);
  };
  const double n = static_cast<double>(numel(a.features)), b = static_cast<double>(a.features[0]);
  c.work.bytes = 4.0 * (3.0 * n + 3.0 * b);  // delta and a read, the gradient written
  c.work.flops = 6.0 * n;                    // |δ·a| and its extremes again, sign, products, sum
  c.label = shape_str(a.features) + " K=" + std::to_string(a.local_channels) + (wrt == 0 ? " d/ddelta" : " d/da");
  return c;
}

// Cross-entropy of logits [N, classes] against labels: the tiny preset's 10 classes
// (Fashion-MNIST), the paper preset's 100 (CIFAR-100), and a large case.
struct CrossEntropyShape {
  std::string name;
  int64_t n, classes;
};

inline std::vector<CrossEntropyShape> cross_entropy_shapes(bool gpu) {
  return {{"tiny", 32, 10}, {"paper", gpu ? 64 : 8, 100}, {"large", gpu ? 65536 : 4096, 1000}};
}

// kernel: the fused softmax_cross_entropy op; unfused: ops::cross_entropy_reference
// (one_hot · log_softmax, summed and negated).
inline OpCase cross_entropy_case(const CrossEntropyShape& x, bool fused) {
  OpCase c;
  c.inputs = {{{x.n, x.classes}, -4.0f, 4.0f}, {{x.n}, 0.0f, static_cast<float>(x.classes), DType::i32}};
  c.build = [fused](Graph&, const std::vector<Value>& v) {
    return fused ? ops::softmax_cross_entropy(v[0], v[1]) : ops::cross_entropy_reference(v[0], v[1]);
  };
  const double n = static_cast<double>(x.n), k = static_cast<double>(x.classes);
  c.work.bytes = 4.0 * (n * k + 2.0 * n);
  c.work.flops = 4.0 * n * k;  // max, subtract, exp, sum
  c.label = "[" + std::to_string(x.n) + "," + std::to_string(x.classes) + "]";
  return c;
}

}  // namespace agilenn::bench
