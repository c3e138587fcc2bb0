// Builder API: a Value is a node of a Graph; every function appends registry ops.
// Vjp rules, layer builders and models are all written with these.
#pragma once

#include <string>
#include <vector>

#include "engine/ir/fused_program.h"
#include "engine/ir/value.h"

namespace agilenn {


namespace ops {

// ---- leaves and constants
Value leaf(Graph& g, const std::string& name, Shape shape, DType dtype, LeafKind kind = LeafKind::input);
Value fill(Graph& g, double value, Shape shape, DType dtype);
// A scalar of x's dtype (broadcasts against x).
Value scalar_like(const Value& x, double value);
// 0, 1, ..., n-1.
Value iota(Graph& g, int64_t n, DType dtype);

// ---- elementwise (binary ops broadcast like numpy; operands share a dtype)
Value neg(const Value& x);
Value abs(const Value& x);
Value sign(const Value& x);
Value exp(const Value& x);
Value log(const Value& x);
Value sqrt(const Value& x);
Value rsqrt(const Value& x);
Value sigmoid(const Value& x);
Value tanh(const Value& x);
Value clamp(const Value& x, double lo, double hi);
// g where lo ≤ x ≤ hi, else 0: clamp's vjp in one pass (x and g share a shape).
Value clamp_grad(const Value& x, const Value& g, double lo, double hi);
Value add(const Value& a, const Value& b);
Value sub(const Value& a, const Value& b);
Value mul(const Value& a, const Value& b);
Value div(const Value& a, const Value& b);
Value maximum(const Value& a, const Value& b);
Value minimum(const Value& a, const Value& b);
// Comparisons give uint8 masks (1 where true).
Value equal(const Value& a, const Value& b);
Value less(const Value& a, const Value& b);
Value less_equal(const Value& a, const Value& b);
Value greater(const Value& a, const Value& b);
Value greater_equal(const Value& a, const Value& b);
Value where(const Value& cond, const Value& a, const Value& b);
// A chain of elementwise ops in one node (the fusion pass makes these; engine/ir/
// fused_program.h): `steps` over registers that start with `inputs`, broadcast to `shape`.
Value fused_elementwise(const std::vector<Value>& inputs, const std::vector<FusedStep>& steps, const Shape& shape);
// The same program as a chain of registry ops: the fused node's meaning (and its vjp).
Value fused_elementwise_reference(const std::vector<Value>& inputs, const std::vector<FusedStep>& steps,
                                  const Shape& shape);
// Such a program summed over its leading `axes` (the fusion pass's reduction of a chain):
// the last register's sum, or with `sums` those registers' sums stacked along a new first
// axis (sums the pass merged, which read the same inputs). Its meaning is
// fused_sum_reference.
Value fused_sum(const std::vector<Value>& inputs, const std::vector<FusedStep>& steps, const Shape& shape,
                std::vector<int64_t> axes, bool keepdims, std::vector<int64_t> sums = {});
Value fused_sum_reference(const std::vector<Value>& inputs, const std::vector<FusedStep>& steps, const Shape& shape,
                          const std::vector<int64_t>& axes, bool keepdims, const std::vector<int64_t>& sums = {});
Value cast(const Value& x, DType dtype);

// ---- reductions (empty axes = all axes)
Value sum(const Value& x, std::vector<int64_t> axes = {}, bool keepdims = false);
Value max(const Value& x, std::vector<int64_t> axes = {}, bool keepdims = false);
Value min(const Value& x, std::vector<int64_t> axes = {}, bool keepdims = false);
Value mean(const Value& x, std::vector<int64_t> axes = {}, bool keepdims = false);
Value argmin(const Value& x, int64_t axis);

// ---- layout
Value broadcast_to(const Value& x, Shape shape);
// Sums x down to `shape` (the reverse of broadcasting); identity when shapes match.
Value sum_to(const Value& x, const Shape& shape);
Value reshape(const Value& x, Shape shape);
Value transpose(const Value& x, std::vector<int64_t> perm);
Value slice(const Value& x, std::vector<int64_t> begin, std::vector<int64_t> end);
// Slice of [begin, end) along one axis.
Value slice_axis(const Value& x, int64_t axis, int64_t begin, int64_t end);
Value pad(const Value& x, std::vector<int64_t> before, std::vector<int64_t> after);
Value concat(const std::vector<Value>& xs, int64_t axis);

// ---- convolution family: NHWC input, HWIO filter [KH,KW,C/groups,Cout]
// same: TensorFlow's rule (out = ceil(in / stride), the odd pixel of padding after);
// symmetric: (k − 1)·dilation / 2 on each side, PyTorch's convention for odd kernels.
enum class Padding { same, valid, symmetric };
struct Conv2dOptions {
  std::vector<int64_t> stride{1, 1};
  std::vector<int64_t> dilation{1, 1};
  int64_t groups = 1;
  Padding padding = Padding::valid;
};
Value conv2d(const Value& x, const Value& w, const Conv2dOptions& opt = {});
// The attrs of a conv2d node (stride, dilation, groups, explicit pads) are shared by
// its data- and filter-gradient ops.
Value conv2d_backward_input(const Value& gy, const Value& w, const Attrs& conv_attrs, const Shape& input_shape);
Value conv2d_backward_filter(const Value& x, const Value& gy, const Attrs& conv_attrs, const Shape& filter_shape);
Value depthwise_conv2d(const Value& x, const Value& w, Conv2dOptions opt = {});

// ---- dense
Value matmul(const Value& a, const Value& b, bool transpose_a = false, bool transpose_b = false);
// x [N,in] · w [in,out] + b [out]; b may be an invalid Value for no bias.
Value dense(const Value& x, const Value& w, const Value& b);

// ---- normalisation and activations
Value softmax(const Value& x, int64_t axis = -1);
Value log_softmax(const Value& x, int64_t axis = -1);
Value relu(const Value& x);
Value relu6(const Value& x);
Value silu(const Value& x);
Value global_avg_pool(const Value& x);  // NHWC -> [N,C]

struct BatchNormResult {
  Value y;
  Value new_running_mean;  // only in train mode
  Value new_running_var;   // only in train mode
  Value batch_mean;        // train mode: this batch's statistics (no gradient), the
  Value batch_var;         // moving averages' inputs (unbiased variance)
};
// Channels are the last axis; statistics over every other axis. Train mode normalises by
// the biased batch variance and returns the moving averages
// new = momentum * old + (1 - momentum) * batch (the unbiased batch variance for var).
// `replicas` > 1 (SyncBN): the statistics are those of the global batch of that many
// ranks, each holding x's shape, through all_reduce_sum.
BatchNormResult batch_norm_train(const Value& x, const Value& gamma, const Value& beta,
                                 const Value& running_mean, const Value& running_var, double momentum,
                                 double eps, int64_t replicas = 1);
Value batch_norm_eval(const Value& x, const Value& gamma, const Value& beta, const Value& running_mean,
                      const Value& running_var, double eps);

// ---- indexing and losses
// numpy.take: out = x.shape[:axis] + idx.shape + x.shape[axis+1:]; idx is int32.
Value gather(const Value& x, const Value& idx, int64_t axis);
// The adjoint of gather: scatter-adds g into zeros of extent `dim` along `axis`.
Value gather_backward(const Value& g, const Value& idx, int64_t axis, int64_t dim);
Value one_hot(const Value& idx, int64_t depth, DType dtype);
// Per-sample cross-entropy of logits [N,C] against int32 labels [N]: -log_softmax[label],
// one fused softmax_cross_entropy op whose vjp is g[:,None] · (softmax(logits) − one_hot)
// (in registry ops, rounding as the decomposition's vjp does on the CPU).
// A label outside [0, C) is an error on the CPU; the GPU, which cannot check device data
// without synchronising, gives that row a NaN loss.
Value cross_entropy(const Value& logits, const Value& labels);
Value softmax_cross_entropy(const Value& logits, const Value& labels);
// The decomposition: -Σ_c one_hot(labels)_c · log_softmax(logits)_c.
Value cross_entropy_reference(const Value& logits, const Value& labels);

// ---- randomness, resampling, gradient control
// Mask of 0 and 1/(1-p), a pure function of (seed, counter, element index), so replays
// and resumed runs draw the same masks; feed a fresh counter each step.
Value dropout_mask(const Value& counter, Shape shape, double p, uint64_t seed, DType dtype);
Value dropout(const Value& x, const Value& counter, double p, uint64_t seed);
// Bilinear resize of NHWC images, half-pixel centres, no antialiasing. Applied to data
// only: it has no vjp, and grad refuses to differentiate through it.
Value resize_bilinear(const Value& x, int64_t out_h, int64_t out_w);
Value stop_gradient(const Value& x);

// ---- collectives of a data-parallel job (engine/dist): every rank runs the same graph
// ---- and meets the collectives in the same order.
// x summed over the ranks (the identity in a world of one rank).
Value all_reduce_sum(const Value& x);

// ---- fused ops of the AgileNN step; each has a reference decomposition into primitives
// that defines its values and derivatives. quantize's and attribution_stats' vjps are fused
// backward ops computing what the decomposition's vjp computes; the vjps of those
// backward ops differentiate their own decompositions (the decomposed first-order vjps),
// so every order agrees with the decomposition.

// Soft-to-hard quantizer against centroid values c [J]: forward is the nearest centroid
// (first on ties); gradients are those of soft = Σ_j softmax_j(-(x - c_j)²) · c_j.
Value quantize(const Value& x, const Value& centroids);
Value quantize_reference(const Value& x, const Value& centroids);
Value quantize_soft(const Value& x, const Value& centroids);
// quantize's vjp in one pass: the gradient of sum(quantize(x, centroids) · g) through the
// soft path (g shaped like x) w.r.t. x (wrt = 0, shaped like x) or the centroids (wrt = 1, [J]).
Value quantize_backward(const Value& x, const Value& centroids, const Value& g, int64_t wrt);
// Its reference decomposition: quantize_backward_reference (engine/autodiff/fused_vjps.h).

// Per-sample attribution statistics from delta = f - b and A = Σ_k w_k G_k, both
// [B,h,w,C], with I = |delta ⊙ A| and P = Σ_{h,w} I. Output [B,3]:
//   [:,0] = Σ_{c<K} P (local importance), [:,1] = Σ_c P (total importance),
//   [:,2] = max_{h,w,c≥K} I − min_{h,w,c<K} I (the disorder numerator).
Value attribution_stats(const Value& delta, const Value& a, int64_t local_channels);
Value attribution_stats_reference(const Value& delta, const Value& a, int64_t local_channels);
// attribution_stats' vjp in one pass: the gradient of sum(attribution_stats(delta, a) · g)
// (g [B,3]) w.r.t. delta (wrt = 0) or a (wrt = 1), shaped like delta. The max/min term's
// gradient is shared equally among the elements that attain the extreme, as the
// decomposition's max/min vjps share it, so the two agree on ties too.
Value attribution_stats_backward(const Value& delta, const Value& a, const Value& g, int64_t local_channels,
                                 int64_t wrt);
// Its reference decomposition: attribution_stats_backward_reference (engine/autodiff/fused_vjps.h).

}  // namespace ops

Value operator+(const Value& a, const Value& b);
Value operator-(const Value& a, const Value& b);
Value operator*(const Value& a, const Value& b);
Value operator/(const Value& a, const Value& b);
Value operator-(const Value& a);
Value operator+(const Value& a, double b);
Value operator-(const Value& a, double b);
Value operator*(const Value& a, double b);
Value operator/(const Value& a, double b);
Value operator+(double a, const Value& b);
Value operator-(double a, const Value& b);
Value operator*(double a, const Value& b);
Value operator/(double a, const Value& b);

}  // namespace agilenn
