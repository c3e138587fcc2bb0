// Layer builders: each creates its parameters through a Scope and appends graph nodes.
// Conventions follow the seed (Keras): no conv biases unless said, Glorot-uniform
// kernels, batch norm gamma 1 / beta 0, "same" padding (or the scope's conv_padding).
#pragma once

#include "engine/nn/params.h"

namespace agilenn::nn {

struct BatchNormOptions {
  double momentum = 0.99;
  double eps = 1e-3;
};

Value conv2d(const Scope& s, const Value& x, int64_t filters, int64_t kernel, int64_t stride = 1, bool bias = false);
// Depthwise k×k convolution, depth multiplier 1.
Value depthwise_conv2d(const Scope& s, const Value& x, int64_t kernel, int64_t stride = 1, int64_t dilation = 1);
// Depthwise k×k then pointwise 1×1, no bias, nothing in between (Keras SeparableConv2D).
Value separable_conv2d(const Scope& s, const Value& x, int64_t filters, int64_t kernel, int64_t stride = 1,
                       int64_t dilation = 1);
// Train mode: batch statistics, and the running-statistics update recorded on the scope.
Value batch_norm(const Scope& s, const Value& x, const BatchNormOptions& opt);
Value dense(const Scope& s, const Value& x, int64_t units, bool bias = true);
// x · sigmoid(W2 · silu(W1 · pool(x) + b1) + b2), with max(1, round(in_channels·ratio)) squeeze channels.
Value squeeze_excite(const Scope& s, const Value& x, int64_t squeeze_channels);

// MobileNetV2 inverted residual (expand t, output c, stride): the residual is added only
// when stride is 1 and input and output channels are equal; the last 1×1 has BN, no activation.
Value inverted_residual(const Scope& s, const Value& x, int64_t expand, int64_t out_channels, int64_t stride,
                        const BatchNormOptions& bn);
// EfficientNetV2 blocks (SiLU activations): MBConv (1×1 expand, depthwise, SE, 1×1
// project) and Fused-MBConv (k×k expand, optional SE, 1×1 project; a single k×k conv when
// expand is 1). Residual when stride is 1 and channels match.
Value mbconv(const Scope& s, const Value& x, int64_t expand, int64_t out_channels, int64_t stride, double se_ratio,
             const BatchNormOptions& bn);
Value fused_mbconv(const Scope& s, const Value& x, int64_t expand, int64_t out_channels, int64_t stride,
                   double se_ratio, const BatchNormOptions& bn);

}  // namespace agilenn::nn
