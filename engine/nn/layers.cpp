#include "engine/nn/layers.h"

#include <cmath>

#include "engine/core/error.h"

namespace agilenn::nn {
namespace {

ops::Conv2dOptions padded(const Scope& s, int64_t stride, int64_t dilation = 1, int64_t groups = 1) {
  ops::Conv2dOptions o;
  o.padding = s.conv_padding();
  o.stride = {stride, stride};
  o.dilation = {dilation, dilation};
  o.groups = groups;
  return o;
}

// Keras' fans for a conv kernel [KH,KW,in,out]: receptive field × in, × out.
Init glorot_conv(int64_t kh, int64_t kw, int64_t in, int64_t out) {
  const double rf = static_cast<double>(kh * kw);
  return Init::Glorot(rf * static_cast<double>(in), rf * static_cast<double>(out));
}

}  // namespace

Value conv2d(const Scope& s, const Value& x, int64_t filters, int64_t kernel, int64_t stride, bool bias) {
  const int64_t in = x.dim(-1);
  Value w = s.parameter("weight", {kernel, kernel, in, filters}, glorot_conv(kernel, kernel, in, filters));
  Value y = ops::conv2d(x, w, padded(s, stride));
  if (bias) y = y + s.parameter("bias", {filters}, Init::Zeros());
  return y;
}

Value depthwise_conv2d(const Scope& s, const Value& x, int64_t kernel, int64_t stride, int64_t dilation) {
  const int64_t c = x.dim(-1);
  // Keras stores depthwise kernels as [KH,KW,C,1]: fan_in = k²·C, fan_out = k²·1.
  Value w = s.parameter("weight", {kernel, kernel, 1, c},
                        Init::Glorot(static_cast<double>(kernel * kernel * c), static_cast<double>(kernel * kernel)));
  return ops::conv2d(x, w, padded(s, stride, dilation, c));
}

Value separable_conv2d(const Scope& s, const Value& x, int64_t filters, int64_t kernel, int64_t stride,
                       int64_t dilation) {
  Value d = depthwise_conv2d(s.child("depthwise"), x, kernel, stride, dilation);
  return conv2d(s.child("pointwise"), d, filters, 1);
}

Value batch_norm(const Scope& s, const Value& x, const BatchNormOptions& opt) {
  const int64_t c = x.dim(-1);
  Value gamma = s.parameter("gamma", {c}, Init::Ones());
  Value beta = s.parameter("beta", {c}, Init::Zeros());
  Value mean = s.state("moving_mean", {c}, Init::Zeros());
  Value var = s.state("moving_var", {c}, Init::Ones());
  if (!s.training()) return ops::batch_norm_eval(x, gamma, beta, mean, var, opt.eps);
  ops::BatchNormResult r =
      ops::batch_norm_train(x, gamma, beta, mean, var, opt.momentum, opt.eps, s.batch_norm_replicas());
  s.update_state(mean, r.new_running_mean);
  s.update_state(var, r.new_running_var);
  s.record_batch_statistic(mean, r.batch_mean);
  s.record_batch_statistic(var, r.batch_var);
  return r.y;
}

Value dense(const Scope& s, const Value& x, int64_t units, bool bias) {
  const int64_t in = x.dim(-1);
  Value w = s.parameter("weight", {in, units}, Init::Glorot(static_cast<double>(in), static_cast<double>(units)));
  Value b = bias ? s.parameter("bias", {units}, Init::Zeros()) : Value();
  return ops::dense(x, w, b);
}

Value squeeze_excite(const Scope& s, const Value& x, int64_t squeeze_channels) {
  const int64_t c = x.dim(-1);
  Value pooled = ops::reshape(ops::global_avg_pool(x), {x.dim(0), 1, 1, c});
  Value squeezed = ops::silu(conv2d(s.child("reduce"), pooled, squeeze_channels, 1, 1, true));
  Value gate = ops::sigmoid(conv2d(s.child("expand"), squeezed, c, 1, 1, true));
  return x * gate;
}

Value inverted_residual(const Scope& s, const Value& x, int64_t expand, int64_t out_channels, int64_t stride,
                        const BatchNormOptions& bn) {
  const int64_t in = x.dim(-1);
  Value h = x;
  if (expand != 1) {
    const auto hidden = static_cast<int64_t>(std::lround(static_cast<double>(in * expand)));
    h = ops::relu6(batch_norm(s.child("expand_bn"), conv2d(s.child("expand"), h, hidden, 1), bn));
  }
  h = ops::relu6(batch_norm(s.child("depthwise_bn"), depthwise_conv2d(s.child("depthwise"), h, 3, stride), bn));
  h = batch_norm(s.child("project_bn"), conv2d(s.child("project"), h, out_channels, 1), bn);
  return stride == 1 && in == out_channels ? x + h : h;
}

Value mbconv(const Scope& s, const Value& x, int64_t expand, int64_t out_channels, int64_t stride, double se_ratio,
             const BatchNormOptions& bn) {
  const int64_t in = x.dim(-1), hidden = in * expand;
  Value h = x;
  if (expand != 1) h = ops::silu(batch_norm(s.child("expand_bn"), conv2d(s.child("expand"), h, hidden, 1), bn));
  h = ops::silu(batch_norm(s.child("depthwise_bn"), depthwise_conv2d(s.child("depthwise"), h, 3, stride), bn));
  if (se_ratio > 0)
    h = squeeze_excite(s.child("se"), h,
                       std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(in) * se_ratio)));
  h = batch_norm(s.child("project_bn"), conv2d(s.child("project"), h, out_channels, 1), bn);
  return stride == 1 && in == out_channels ? x + h : h;
}

Value fused_mbconv(const Scope& s, const Value& x, int64_t expand, int64_t out_channels, int64_t stride,
                   double se_ratio, const BatchNormOptions& bn) {
  const int64_t in = x.dim(-1);
  Value h;
  if (expand == 1) {
    h = ops::silu(batch_norm(s.child("conv_bn"), conv2d(s.child("conv"), x, out_channels, 3, stride), bn));
  } else {
    h = ops::silu(batch_norm(s.child("expand_bn"), conv2d(s.child("expand"), x, in * expand, 3, stride), bn));
    if (se_ratio > 0)
      h = squeeze_excite(s.child("se"), h,
                         std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(in) * se_ratio)));
    h = batch_norm(s.child("project_bn"), conv2d(s.child("project"), h, out_channels, 1), bn);
  }
  return stride == 1 && in == out_channels ? x + h : h;
}

}  // namespace agilenn::nn
