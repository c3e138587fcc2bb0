#include "engine/export/device_c99.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iomanip>
#include <limits>
#include <sstream>

#include "engine/core/error.h"

namespace agilenn::exporting {
namespace {

using tflite::OpKind;
using tflite::TensorInfo;

// TFLite's fixed-point form of a real multiplier m > 0: m = q · 2^shift / 2^31 with q in
// [2^30, 2^31), shift in [-31, 30] (a multiplier too small is 0; one of 2^30 or more, which
// no calibrated layer has, is refused rather than saturated as TFLite does).
std::pair<int32_t, int32_t> quantize_multiplier(double m, const std::string& layer) {
  if (m == 0) return {0, 0};
  int shift = 0;
  const double q = std::frexp(m, &shift);
  auto fixed = static_cast<int64_t>(std::round(q * static_cast<double>(int64_t{1} << 31)));
  if (fixed == int64_t{1} << 31) {
    fixed /= 2;
    ++shift;
  }
  if (shift < -31) shift = 0, fixed = 0;
  AGILENN_CHECK(shift <= 30, "C99 device half: layer '" << layer << "' has a requantization multiplier of " << m
                                                        << ", beyond the int8 kernels' range (2^30)");
  return {static_cast<int32_t>(fixed), shift};
}

template <class T>
std::vector<T> values_of(const TensorInfo& t) {
  AGILENN_CHECK(t.data.size() % sizeof(T) == 0, "tensor '" << t.name << "': " << t.data.size() << " bytes");
  std::vector<T> v(t.data.size() / sizeof(T));
  std::memcpy(v.data(), t.data.data(), t.data.size());
  return v;
}

template <class T>
std::string c_array(const std::string& type, const std::string& name, const std::vector<T>& v) {
  std::ostringstream s;
  s << "static const " << type << " " << name << "[" << v.size() << "] = {";
  for (size_t i = 0; i < v.size(); ++i) s << (i % 16 == 0 ? "\n    " : " ") << static_cast<int64_t>(v[i]) << ",";
  s << "\n};\n";
  return s.str();
}

// The ReLU6 or identity range of a quantized int8 tensor, as TFLite rounds it (in float).
std::pair<int32_t, int32_t> activation_range(tflite::Activation a, const TensorInfo& out) {
  if (a == tflite::Activation::none) return {-128, 127};
  const float scale = out.q.scale.at(0);
  const auto zero = static_cast<int32_t>(out.q.zero_point.at(0));
  return {std::max(-128, zero + static_cast<int32_t>(std::round(0.0f / scale))),
          std::min(127, zero + static_cast<int32_t>(std::round(6.0f / scale)))};
}

int32_t zero_point(const TensorInfo& t) { return static_cast<int32_t>(t.q.zero_point.at(0)); }

}  // namespace

C99Device device_c99(const tflite::ModelBuilder& model, int images, int local_logits, int codes,
                     const CodecModel& codec, const std::string& provenance) {
  const std::vector<TensorInfo>& tensors = model.tensors();
  const std::vector<tflite::Operator>& ops = model.ops();
  auto tensor = [&](int t) -> const TensorInfo& { return tensors.at(static_cast<size_t>(t)); };

  // The codes' CAST, CAST, GATHER become one table lookup: their int32 indices never exist.
  std::vector<bool> folded(ops.size(), false);
  std::vector<size_t> lookups;  // the first CAST of each folded triple
  std::vector<int> skipped_tensors;
  for (size_t i = 0; i + 2 < ops.size(); ++i) {
    const tflite::Operator &a = ops[i], &b = ops[i + 1], &g = ops[i + 2];
    if (a.kind == OpKind::cast && b.kind == OpKind::cast && g.kind == OpKind::gather && b.inputs[0] == a.outputs[0] &&
        g.inputs[1] == b.outputs[0]) {
      AGILENN_CHECK(tensor(a.inputs[0]).type == tflite::Type::i8 && tensor(a.outputs[0]).type == tflite::Type::u8 &&
                        tensor(b.outputs[0]).type == tflite::Type::i32 && g.axis == 0 &&
                        tensor(g.inputs[0]).data.size() == 256 && g.outputs[0] == codes,
                    "C99 device half: CAST, CAST, GATHER that are not the codes' table lookup (int8 → uint8 → "
                    "int32 indices into a 256-entry table, giving the codes)");
      folded[i] = folded[i + 1] = true;
      lookups.push_back(i);
      skipped_tensors.push_back(a.outputs[0]);
      skipped_tensors.push_back(b.outputs[0]);
    }
  }

  // Arena tensors: computed, neither the image nor an output, nor skipped. Alive as the
  // model's lifetimes say, except that the lookup, two ops on, reads what the first folded
  // CAST read; placed first-fit, largest first.
  struct Slot {
    int tensor;
    int first, last;
    int64_t bytes, offset = -1;
  };
  std::vector<tflite::ModelBuilder::Lifetime> life = model.lifetimes({images}, {local_logits, codes});
  for (size_t i : lookups) life[static_cast<size_t>(ops[i].inputs[0])].last = static_cast<int>(i + 2);
  std::vector<Slot> slots;
  for (size_t t = 0; t < tensors.size(); ++t) {
    const int ti = static_cast<int>(t);
    if (life[t].first < 0 || ti == images || ti == local_logits || ti == codes ||
        std::count(skipped_tensors.begin(), skipped_tensors.end(), ti))
      continue;
    slots.push_back({ti, life[t].first, life[t].last, (tensor(ti).bytes() + 3) / 4 * 4});
  }
  std::vector<size_t> order(slots.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return slots[a].bytes > slots[b].bytes; });
  int64_t arena = 0;
  for (size_t k = 0; k < order.size(); ++k) {
    Slot& s = slots[order[k]];
    std::vector<std::pair<int64_t, int64_t>> taken;
    for (size_t j = 0; j < k; ++j) {
      const Slot& o = slots[order[j]];
      if (o.first <= s.last && s.first <= o.last) taken.push_back({o.offset, o.offset + o.bytes});
    }
    std::sort(taken.begin(), taken.end());
    int64_t at = 0;
    for (const auto& [from, to] : taken)
      if (at + s.bytes > from && at < to) at = to;
    s.offset = at;
    arena = std::max(arena, at + s.bytes);
  }
  auto buffer = [&](int t) -> std::string {
    if (t == images) return "image";
    if (t == local_logits) return "local_logits";
    if (t == codes) return "codes";
    for (const Slot& s : slots)
      if (s.tensor == t) return "(arena + " + std::to_string(s.offset) + ")";
    AGILENN_THROW("C99 device half: tensor '" << tensor(t).name << "' has no buffer");
  };

  std::ostringstream constants, body;
  int64_t code_count = 0;
  for (size_t i = 0; i < ops.size(); ++i) {
    const tflite::Operator& op = ops[i];
    if (folded[i]) continue;
    const std::string id = std::to_string(i);
    const TensorInfo& in = tensor(op.inputs[0]);
    const TensorInfo& out = tensor(op.outputs[0]);
    switch (op.kind) {
      case OpKind::conv2d:
      case OpKind::depthwise_conv2d: {
        const bool depthwise = op.kind == OpKind::depthwise_conv2d;
        const TensorInfo& filter = tensor(op.inputs[1]);
        const int64_t kh = filter.shape[1], kw = filter.shape[2];
        std::vector<int32_t> multiplier, shift;
        for (float fs : filter.q.scale) {
          const auto [m, sh] = quantize_multiplier(static_cast<double>(in.q.scale.at(0)) * static_cast<double>(fs) /
                                                       static_cast<double>(out.q.scale.at(0)),
                                                   filter.name);
          multiplier.push_back(m);
          shift.push_back(sh);
        }
        auto pad = [&](int64_t size_in, int64_t size_out, int64_t k) {
          return std::max<int64_t>((size_out - 1) * op.stride + k - size_in, 0) / 2;
        };
        const auto [lo, hi] = activation_range(op.activation, out);
        constants << "/* " << filter.name << " */\n"
                  << c_array("int8_t", "filter_" + id, values_of<int8_t>(filter))
                  << c_array("int32_t", "bias_" + id, values_of<int32_t>(tensor(op.inputs[2])))
                  << c_array("int32_t", "multiplier_" + id, multiplier) << c_array("int32_t", "shift_" + id, shift)
                  << "static const agilenn_conv_params conv_" << id << " = {" << in.shape[1] << ", " << in.shape[2]
                  << ", " << in.shape[3] << ", " << out.shape[1] << ", " << out.shape[2] << ", " << out.shape[3] << ", "
                  << kh << ", " << kw << ", " << op.stride << ", " << pad(in.shape[1], out.shape[1], kh) << ", "
                  << pad(in.shape[2], out.shape[2], kw) << ", " << (depthwise ? 1 : 0) << ", " << zero_point(in)
                  << ", " << zero_point(out) << ", " << lo << ", " << hi << ", filter_" << id << ", bias_" << id
                  << ", multiplier_" << id << ", shift_" << id << "};\n\n";
        body << "  agilenn_conv(&conv_" << id << ", " << buffer(op.inputs[0]) << ", " << buffer(op.outputs[0])
             << ");\n";
        break;
      }
      case OpKind::average_pool: {
        AGILENN_CHECK(op.filter_height == in.shape[1] && op.filter_width == in.shape[2],
                      "C99 device half: an average pool that is not global");
        body << "  agilenn_average_pool(" << in.shape[1] << ", " << in.shape[2] << ", " << in.shape[3]
             << ", -128, 127, " << buffer(op.inputs[0]) << ", " << buffer(op.outputs[0]) << ");\n";
        break;
      }
      case OpKind::fully_connected: {
        const TensorInfo& weights = tensor(op.inputs[1]);
        const auto [m, sh] = quantize_multiplier(static_cast<double>(in.q.scale.at(0)) *
                                                     static_cast<double>(weights.q.scale.at(0)) /
                                                     static_cast<double>(out.q.scale.at(0)),
                                                 weights.name);
        const auto [lo, hi] = activation_range(op.activation, out);
        constants << "/* " << weights.name << " */\n"
                  << c_array("int8_t", "weights_" + id, values_of<int8_t>(weights))
                  << c_array("int32_t", "bias_" + id, values_of<int32_t>(tensor(op.inputs[2])))
                  << "static const agilenn_fully_connected_params dense_" << id << " = {" << weights.shape[1] << ", "
                  << weights.shape[0] << ", " << zero_point(in) << ", " << zero_point(out) << ", " << lo << ", " << hi
                  << ", weights_" << id << ", bias_" << id << ", " << m << ", " << sh << "};\n\n";
        body << "  agilenn_fully_connected(&dense_" << id << ", " << buffer(op.inputs[0]) << ", "
             << buffer(op.outputs[0]) << ");\n";
        break;
      }
      case OpKind::gather: {
        AGILENN_CHECK(i >= 2 && folded[i - 2], "C99 device half: a GATHER that is not the codes' table lookup");
        const int remote = ops[i - 2].inputs[0];
        code_count = numel(tensor(remote).shape);
        constants << "/* the centroid index of each int8 remote value, by the value as uint8 */\n"
                  << c_array("uint8_t", "code_table", values_of<uint8_t>(tensor(op.inputs[0]))) << "\n";
        body << "  agilenn_codes(" << buffer(remote) << ", " << code_count << ", code_table, codes);\n";
        break;
      }
      case OpKind::cast: AGILENN_THROW("C99 device half: a CAST outside the codes' table lookup");
    }
  }
  AGILENN_CHECK(code_count > 0, "C99 device half: the model computes no codes");
  constants << "/* the codec's model: one frequency table per remote channel */\n"
            << c_array("uint16_t", "codec_freq", codec.freq) << c_array("uint16_t", "codec_cum", codec.cum)
            << "static const agilenn_codec_model codec = {" << codec.contexts << "u, " << codec.symbols
            << "u, codec_freq, codec_cum};\n";

  const TensorInfo& image = tensor(images);
  const TensorInfo& logits = tensor(local_logits);
  C99Device out;
  out.arena_bytes = arena;
  std::ostringstream h;
  h << "/* The agilenn device half, int8, as C99: " << provenance
    << ".\n * Generated by agilenn-export --target c99; the same model as device_int8.tflite, computed bit for bit\n"
    << " * as LiteRT's reference kernels compute it. Values are q with real = scale * (q - zero_point). */\n"
    << "#ifndef AGILENN_DEVICE_H\n#define AGILENN_DEVICE_H\n\n#include <stddef.h>\n#include <stdint.h>\n\n"
    << "#define AGILENN_DEVICE_IMAGE_BYTES " << numel(image.shape) << " /* [" << image.shape[1] << "][" << image.shape[2]
    << "][" << image.shape[3] << "] int8, preprocessed as the manifest says, then quantized */\n"
    << std::setprecision(std::numeric_limits<float>::max_digits10) << std::showpoint
    << "#define AGILENN_DEVICE_IMAGE_SCALE " << image.q.scale[0] << "f\n"
    << "#define AGILENN_DEVICE_IMAGE_ZERO_POINT " << zero_point(image) << "\n"
    << std::noshowpoint << "#define AGILENN_DEVICE_CLASSES " << numel(logits.shape) << "\n"
    << std::showpoint << "#define AGILENN_DEVICE_LOGITS_SCALE " << logits.q.scale[0] << "f\n" << std::noshowpoint
    << "#define AGILENN_DEVICE_LOGITS_ZERO_POINT " << zero_point(logits) << "\n"
    << "#define AGILENN_DEVICE_CODES " << code_count << " /* NHWC, one per remote value */\n"
    << "#define AGILENN_DEVICE_STREAM_BOUND " << agilenn_codec_bound(static_cast<size_t>(code_count)) << "\n"
    << "#define AGILENN_DEVICE_ARENA_BYTES " << arena << "\n\n"
    << "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n"
    << "/* Runs the device half on one image: writes the local logits [AGILENN_DEVICE_CLASSES] and the\n"
    << " * codes [AGILENN_DEVICE_CODES], encodes the codes into stream[0..capacity) and returns the\n"
    << " * stream's length (0 if capacity is under what the codes need; AGILENN_DEVICE_STREAM_BOUND\n"
    << " * always suffices). Not reentrant: the activations live in one static arena. */\n"
    << "size_t agilenn_device_run(const int8_t* image, int8_t* local_logits, uint8_t* codes, uint8_t* stream,\n"
    << "                          size_t capacity);\n\n#ifdef __cplusplus\n}\n#endif\n\n#endif\n";
  out.header = h.str();
  std::ostringstream c;
  c << "/* Generated by agilenn-export --target c99: " << provenance << ". */\n"
    << "#include \"agilenn_device.h\"\n\n#include \"agilenn_codec.h\"\n#include \"agilenn_int8.h\"\n\n"
    << constants.str() << "\n/* The activations, placed by a liveness plan. */\n"
    << "static int8_t arena[" << std::max<int64_t>(arena, 1) << "] __attribute__((aligned(4)));\n\n"
    << "size_t agilenn_device_run(const int8_t* image, int8_t* local_logits, uint8_t* codes, uint8_t* stream,\n"
    << "                          size_t capacity) {\n"
    << body.str() << "  return agilenn_codec_encode(&codec, codes, " << code_count << ", stream, capacity);\n}\n";
  out.source = c.str();
  return out;
}

}  // namespace agilenn::exporting
