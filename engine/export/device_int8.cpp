#include "engine/export/device_int8.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include "engine/core/error.h"
#include "engine/export/tflite.h"
#include "engine/models/agilenn.h"
#include "engine/passes/passes.h"
#include "engine/runtime/executor.h"

namespace agilenn::exporting {
namespace {

static_assert(std::endian::native == std::endian::little, "TFLite buffers are little-endian");

struct Range {
  double lo = std::numeric_limits<double>::infinity(), hi = -std::numeric_limits<double>::infinity();
  void widen(const Tensor& t, int64_t images) {
    const int64_t n = t.numel() / t.dim(0) * images;
    const float* p = t.data<float>();
    for (int64_t i = 0; i < n; ++i) lo = std::min(lo, static_cast<double>(p[i])), hi = std::max(hi, static_cast<double>(p[i]));
  }
};

// Per-tensor asymmetric int8 over [lo, hi] widened to hold 0 (zero padding is exact).
tflite::Quantization activation_quantization(double lo, double hi) {
  lo = std::min(lo, 0.0);
  hi = std::max(hi, 0.0);
  const double scale = hi > lo ? (hi - lo) / 255.0 : 1.0;
  const double zero_point = std::clamp(std::round(-128.0 - lo / scale), -128.0, 127.0);
  return {{static_cast<float>(scale)}, {static_cast<int64_t>(zero_point)}, 0};
}

// A layer's weights [.., O] (output channels last) and bias [O] with the batch norm after it
// folded in: w·s and (b − mean)·s + beta, s = gamma / sqrt(var + eps) per output channel.
std::pair<Tensor, Tensor> fold_batch_norm(const Tensor& weights, const Tensor& bias, const nn::TensorMap& v,
                                          const std::string& bn, double eps) {
  const Tensor gamma = v.at(bn + ".gamma").to(DType::f64), beta = v.at(bn + ".beta").to(DType::f64);
  const Tensor mean = v.at(bn + ".moving_mean").to(DType::f64), var = v.at(bn + ".moving_var").to(DType::f64);
  Tensor w = weights.to(DType::f64).clone(), b = bias.to(DType::f64).clone();
  const int64_t out = w.shape().back();
  AGILENN_CHECK(gamma.numel() == out && b.numel() == out, "batch norm '" << bn << "' does not match its layer");
  for (int64_t o = 0; o < out; ++o) {
    const double s = gamma.item(o) / std::sqrt(var.item(o) + eps);
    for (int64_t i = o; i < w.numel(); i += out) w.set_item(i, w.item(i) * s);
    b.set_item(o, (b.item(o) - mean.item(o)) * s + beta.item(o));
  }
  return {w, b};
}

template <class T>
std::string bytes_of(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

// Symmetric int8 weights, one scale per slice along `axis` (per tensor when axis < 0):
// scale = max |w| / 127, q = round(w / scale) in [-127, 127].
std::pair<std::string, std::vector<float>> quantize_weights(const Tensor& w, int axis) {
  const int64_t channels = axis < 0 ? 1 : w.dim(axis);
  const int64_t inner = axis < 0 ? w.numel() : contiguous_strides(w.shape())[static_cast<size_t>(axis)];
  auto channel = [&](int64_t i) { return (i / inner) % channels; };
  std::vector<double> max_abs(static_cast<size_t>(channels), 0.0);
  for (int64_t i = 0; i < w.numel(); ++i)
    max_abs[static_cast<size_t>(channel(i))] = std::max(max_abs[static_cast<size_t>(channel(i))], std::abs(w.item(i)));
  std::vector<float> scale(static_cast<size_t>(channels));
  for (size_t c = 0; c < scale.size(); ++c) scale[c] = static_cast<float>(max_abs[c] > 0 ? max_abs[c] / 127.0 : 1.0);
  std::vector<int8_t> q(static_cast<size_t>(w.numel()));
  for (int64_t i = 0; i < w.numel(); ++i)
    q[static_cast<size_t>(i)] = static_cast<int8_t>(
        std::clamp(std::round(w.item(i) / scale[static_cast<size_t>(channel(i))]), -127.0, 127.0));
  return {bytes_of(q), scale};
}

// int32 biases at scale input_scale · weight_scale[c], zero point 0.
std::pair<std::string, tflite::Quantization> quantize_bias(const std::string& name, const Tensor& b, float input_scale,
                                                          const std::vector<float>& weight_scale) {
  tflite::Quantization q;
  std::vector<int32_t> v(static_cast<size_t>(b.numel()));
  for (int64_t c = 0; c < b.numel(); ++c) {
    const float ws = weight_scale[weight_scale.size() == 1 ? 0 : static_cast<size_t>(c)];
    const double s = static_cast<double>(input_scale) * static_cast<double>(ws);
    const double r = std::round(b.item(c) / s);
    AGILENN_CHECK(std::abs(r) < 2147483647.0, "int8 device half: bias '" << name << "' channel " << c << " ("
                                                                         << b.item(c) << ") overflows int32 at scale "
                                                                         << s);
    v[static_cast<size_t>(c)] = static_cast<int32_t>(r);
  }
  // Per channel where the weights are (the channels' scales), else per tensor: a per-tensor
  // layer's kernels read one bias scale.
  for (float ws : weight_scale) q.scale.push_back(static_cast<float>(static_cast<double>(input_scale) * ws));
  q.zero_point.assign(q.scale.size(), 0);
  return {bytes_of(v), q};
}

}  // namespace

struct Int8DeviceExporter::Folded {
  models::AgileNNPreset p;
  int64_t classes, batch, k, channels, mid;
  Backend& backend;
  // Folded float64 weights in the engine's layouts: depthwise [3,3,1,C], pointwise
  // [1,1,I,O] with bias [O], dense [K,classes] with bias [classes].
  Tensor dw1, pw1, pw1_bias, dw2, pw2, pw2_bias, dense, dense_bias;
  Graph graph;
  Value images, a1, a2, logits;
  std::unique_ptr<Executor> executor;
  Feeds weights;
  Range input, a1_range, a2_range, logits_range;

  Folded(const models::AgileNNPreset& preset, int64_t c, int64_t b, Backend& be) : p(preset), classes(c), batch(b), backend(be) {}
};

Int8DeviceExporter::Int8DeviceExporter(const nn::TensorMap& v, const models::AgileNNPreset& p, int64_t classes,
                                       int64_t batch, Backend& backend)
    : f_(std::make_unique<Folded>(p, classes, batch, backend)) {
  Folded& f = *f_;
  f.k = p.local_channels();
  f.channels = p.feature_channels;
  f.mid = p.fe_mid_channels;
  auto no_bias = [](int64_t n) { return Tensor::zeros({n}, DType::f64); };
  f.dw1 = v.at("fe.sep1.depthwise.weight").to(DType::f64);
  f.dw2 = v.at("fe.sep2.depthwise.weight").to(DType::f64);
  std::tie(f.pw1, f.pw1_bias) = fold_batch_norm(v.at("fe.sep1.pointwise.weight"), no_bias(f.mid), v, "fe.bn1", p.bn_eps);
  std::tie(f.pw2, f.pw2_bias) =
      fold_batch_norm(v.at("fe.sep2.pointwise.weight"), no_bias(f.channels), v, "fe.bn2", p.bn_eps);
  std::tie(f.dense, f.dense_bias) = fold_batch_norm(v.at("lp.dense.weight"), v.at("lp.dense.bias"), v, "lp.bn", p.bn_eps);

  Graph& g = f.graph;
  f.images = ops::leaf(g, "images", {batch, p.input_size, p.input_size, 3}, DType::f32);
  auto weight = [&](const std::string& name, const Tensor& t) {
    f.weights[name] = backend.to_device(t.to(DType::f32));
    return ops::leaf(g, name, t.shape(), DType::f32);
  };
  auto conv = [](const Value& x, const Value& w, int64_t stride, int64_t groups) {
    ops::Conv2dOptions o;
    o.padding = ops::Padding::same;
    o.stride = {stride, stride};
    o.groups = groups;
    return ops::conv2d(x, w, o);
  };
  f.a1 = conv(f.images, weight("dw1", f.dw1), p.fe_stride, 3);
  const Value h1 = ops::relu6(conv(f.a1, weight("pw1", f.pw1), 1, 1) + weight("pw1_bias", f.pw1_bias));
  f.a2 = conv(h1, weight("dw2", f.dw2), 1, f.mid);
  const Value features = ops::relu6(conv(f.a2, weight("pw2", f.pw2), 1, 1) + weight("pw2_bias", f.pw2_bias));
  f.logits = ops::dense(ops::global_avg_pool(ops::slice_axis(features, 3, 0, f.k)), weight("dense", f.dense),
                        weight("dense_bias", f.dense_bias));
  f.executor = std::make_unique<Executor>(
      g, compile(g, {f.a1.id(), f.a2.id(), f.logits.id()}), backend);
}

Int8DeviceExporter::~Int8DeviceExporter() = default;

Tensor Int8DeviceExporter::run(const Tensor& images, int64_t calibrate) {
  Folded& f = *f_;
  Feeds feeds = f.weights;
  feeds["images"] = f.backend.to_device(images);
  std::vector<Tensor> r = f.executor->run(feeds);
  for (Tensor& t : r) t = f.backend.to_host(t);
  if (calibrate > 0) {
    f.input.widen(images, calibrate);
    f.a1_range.widen(r[0], calibrate);
    f.a2_range.widen(r[1], calibrate);
    f.logits_range.widen(r[2], calibrate);
  }
  return r[2];
}

Int8Device Int8DeviceExporter::build(const Tensor& centroids) const {
  const Folded& f = *f_;
  AGILENN_CHECK(f.input.lo <= f.input.hi, "the int8 device half needs calibration images; none were run");
  const models::AgileNNPreset& p = f.p;
  const Shape fshape = models::feature_shape(p);
  const int64_t h = fshape[0], w = fshape[1], remote = f.channels - f.k;
  const int64_t h1 = f.a1.dim(1), w1 = f.a1.dim(2);
  using tflite::Type;
  tflite::ModelBuilder m;
  // ReLU6 outputs span [0, 6] exactly: their int8 grid needs no calibration.
  const tflite::Quantization relu6 = activation_quantization(0.0, 6.0);
  const tflite::Quantization q_in = activation_quantization(f.input.lo, f.input.hi);
  const tflite::Quantization q_a1 = activation_quantization(f.a1_range.lo, f.a1_range.hi);
  const tflite::Quantization q_a2 = activation_quantization(f.a2_range.lo, f.a2_range.hi);
  const tflite::Quantization q_logits = activation_quantization(f.logits_range.lo, f.logits_range.hi);
  // An unquantized tensor: constant bytes, or computed when `data` is empty.
  auto plain = [&](const std::string& name, Shape shape, Type type, std::string data = "") {
    return m.tensor({name, std::move(shape), type, std::move(data), false, {}});
  };
  auto activation = [&](const std::string& name, Shape shape, const tflite::Quantization& q) {
    return m.tensor({name, std::move(shape), Type::i8, "", true, q});
  };
  // A weight tensor (TFLite layout) quantized along `axis` (< 0: per tensor), and its bias.
  auto weights = [&](const std::string& name, const Tensor& t, int axis, const Tensor& bias, float input_scale) {
    auto [data, scales] = quantize_weights(t, axis);
    tflite::Quantization q{scales, std::vector<int64_t>(scales.size(), 0), std::max(axis, 0)};
    const int wt = m.tensor({name, t.shape(), Type::i8, data, true, q});
    auto [bias_data, bias_q] = quantize_bias(name + "_bias", bias, input_scale, scales);
    const int bt = m.tensor({name + "_bias", bias.shape(), Type::i32, bias_data, true, bias_q});
    return std::pair{wt, bt};
  };
  // Pointwise [1,1,I,O] as TFLite's [O,1,1,I], output channels [from, to).
  auto pointwise = [](const Tensor& pw, int64_t from, int64_t to) {
    const Tensor t = pw.permuted({3, 0, 1, 2});
    const int64_t in = t.dim(3);
    std::vector<double> v(static_cast<size_t>((to - from) * in));
    for (size_t i = 0; i < v.size(); ++i) v[i] = t.item(from * in + static_cast<int64_t>(i));
    return Tensor::from_vector({to - from, 1, 1, in}, v, DType::f64);
  };
  auto bias_slice = [](const Tensor& b, int64_t from, int64_t to) {
    std::vector<double> v;
    for (int64_t c = from; c < to; ++c) v.push_back(b.item(c));
    return Tensor::from_vector({to - from}, v, DType::f64);
  };
  auto depthwise = [](const Tensor& dw) {  // [3,3,1,C] → [1,3,3,C], the same order
    return Tensor::from_vector({1, dw.dim(0), dw.dim(1), dw.dim(3)}, dw.to_vector(), DType::f64);
  };

  const int images = activation("images", {1, p.input_size, p.input_size, 3}, q_in);
  const auto [dw1, dw1_bias] = weights("fe_sep1_depthwise", depthwise(f.dw1), 3, Tensor::zeros({3}, DType::f64), q_in.scale[0]);
  const int a1 = activation("fe_sep1_depthwise_out", {1, h1, w1, 3}, q_a1);
  m.depthwise_conv2d(images, dw1, dw1_bias, a1, static_cast<int>(p.fe_stride), tflite::Activation::none);
  const auto [pw1, pw1_bias] = weights("fe_sep1_pointwise_bn1", pointwise(f.pw1, 0, f.mid), 0, f.pw1_bias, q_a1.scale[0]);
  const int fe1 = activation("fe_bn1_relu6", {1, h1, w1, f.mid}, relu6);
  m.conv2d(a1, pw1, pw1_bias, fe1, 1, tflite::Activation::relu6);
  const auto [dw2, dw2_bias] =
      weights("fe_sep2_depthwise", depthwise(f.dw2), 3, Tensor::zeros({f.mid}, DType::f64), relu6.scale[0]);
  const int a2 = activation("fe_sep2_depthwise_out", {1, h, w, f.mid}, q_a2);
  m.depthwise_conv2d(fe1, dw2, dw2_bias, a2, 1, tflite::Activation::none);
  // The channel split: the last pointwise conv in two, local channels and remote ones.
  const auto [pwl, pwl_bias] =
      weights("fe_sep2_pointwise_bn2_local", pointwise(f.pw2, 0, f.k), 0, bias_slice(f.pw2_bias, 0, f.k), q_a2.scale[0]);
  const int local = activation("local_features", {1, h, w, f.k}, relu6);
  m.conv2d(a2, pwl, pwl_bias, local, 1, tflite::Activation::relu6);
  const auto [pwr, pwr_bias] = weights("fe_sep2_pointwise_bn2_remote", pointwise(f.pw2, f.k, f.channels), 0,
                                       bias_slice(f.pw2_bias, f.k, f.channels), q_a2.scale[0]);
  const int remote_features = activation("remote_features", {1, h, w, remote}, relu6);
  m.conv2d(a2, pwr, pwr_bias, remote_features, 1, tflite::Activation::relu6);
  // Local predictor: global average pool (an int8 average pool keeps its input's scale),
  // dense (its batch norm folded; it reads [1,1,1,K] as [1,K]).
  const int pooled = activation("local_pooled", {1, 1, 1, f.k}, relu6);
  m.average_pool(local, pooled, static_cast<int>(h), static_cast<int>(w));
  const auto [dense, dense_bias] = weights("lp_dense_bn", f.dense.permuted({1, 0}), -1, f.dense_bias, relu6.scale[0]);
  const int logits = activation("local_logits", {1, f.classes}, q_logits);
  m.fully_connected(pooled, dense, dense_bias, logits);
  // Codes: each int8 remote value's centroid index, from a table over the 256 values. GATHER
  // wants non-negative int32 indices: the int8 value q is cast to uint8 first (q mod 256, as
  // CAST converts), then to int32, and the table is laid out in that order. (An ADD of 128 to
  // the int32 values would hold two int32 tensors at once: 4/3 the peak RAM of the tiny preset.)
  const float rs = relu6.scale[0];
  const int64_t rz = relu6.zero_point[0];
  std::vector<uint8_t> table(256);
  const std::vector<double> c = centroids.to_vector();
  for (int q = -128; q < 128; ++q) {
    const float value = rs * static_cast<float>(q - rz);
    size_t best = 0;
    for (size_t j = 1; j < c.size(); ++j)
      if (std::abs(value - static_cast<float>(c[j])) < std::abs(value - static_cast<float>(c[best]))) best = j;
    table[static_cast<uint8_t>(q)] = static_cast<uint8_t>(best);
  }
  const int as_uint8 = plain("remote_as_uint8", {1, h, w, remote}, Type::u8);
  m.cast(remote_features, as_uint8);
  const int index = plain("code_table_index", {1, h, w, remote}, Type::i32);
  m.cast(as_uint8, index);
  const int code_table = plain("code_table", {256}, Type::u8, bytes_of(table));
  const int codes = plain("codes", {1, h, w, remote}, Type::u8);
  m.gather(code_table, index, codes, 0);

  Int8Device out;
  out.images = images;
  out.local_logits = logits;
  out.codes = codes;
  out.tflite = m.serialize({images}, {logits, codes}, "agilenn device half, int8 (preset " + p.name + ")");
  auto json_of = [](const tflite::Quantization& q) {
    return nlohmann::json{{"scale", q.scale[0]}, {"zero_point", q.zero_point[0]}};
  };
  out.model = std::move(m);
  out.quantization = {{"images", json_of(q_in)},
                      {"local_logits", json_of(q_logits)},
                      {"remote_features", json_of(relu6)},
                      {"codes", "uint8 centroid indices, not quantized"}};
  return out;
}

}  // namespace agilenn::exporting
