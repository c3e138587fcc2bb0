#include "engine/export/tflite.h"

#include <flatbuffers/flatbuffers.h>

#include <algorithm>
#include <map>

#include "engine/core/error.h"

namespace agilenn::exporting::tflite {
namespace {

// BuiltinOperator and BuiltinOptions values, and the op versions whose kernels take int8
// (per-channel) operands, from the schema.
constexpr int32_t kAveragePool2d = 1, kConv2d = 3, kDepthwiseConv2d = 4, kFullyConnected = 9, kGather = 36,
                  kCast = 53;
constexpr uint8_t kConv2dOptions = 1, kDepthwiseConv2dOptions = 2, kPool2dOptions = 5, kFullyConnectedOptions = 8,
                  kGatherOptions = 23, kCastOptions = 37;
int32_t op_version(int32_t code) {
  switch (code) {
    case kConv2d:
    case kDepthwiseConv2d: return 3;
    case kFullyConnected: return 4;
    case kAveragePool2d:
    case kCast: return 2;
    default: return 1;
  }
}
constexpr int8_t kPaddingSame = 0, kPaddingValid = 1;
constexpr uint32_t kSchemaVersion = 3;

flatbuffers::voffset_t field(int id) { return static_cast<flatbuffers::voffset_t>(4 + 2 * id); }

// A table built field by field: scalars and offsets to what was built before it.
class Table {
 public:
  explicit Table(flatbuffers::FlatBufferBuilder& b) : b_(b), start_(b.StartTable()) {}
  template <class T>
  Table& scalar(int id, T v, T fallback = T(0)) {
    b_.AddElement<T>(field(id), v, fallback);
    return *this;
  }
  template <class T>
  Table& offset(int id, flatbuffers::Offset<T> o) {
    b_.AddOffset(field(id), o);
    return *this;
  }
  flatbuffers::Offset<void> end() { return flatbuffers::Offset<void>(b_.EndTable(start_)); }

 private:
  flatbuffers::FlatBufferBuilder& b_;
  flatbuffers::uoffset_t start_;
};

}  // namespace

int64_t type_size(Type t) {
  switch (t) {
    case Type::f32:
    case Type::i32: return 4;
    case Type::u8:
    case Type::i8: return 1;
  }
  return 0;
}

int64_t TensorInfo::bytes() const { return numel(shape) * type_size(type); }

int ModelBuilder::tensor(TensorInfo t) {
  AGILENN_CHECK(t.data.empty() || static_cast<int64_t>(t.data.size()) == t.bytes(),
                "TFLite tensor '" << t.name << "': " << t.data.size() << " bytes of data for " << t.bytes());
  tensors_.push_back(std::move(t));
  return static_cast<int>(tensors_.size()) - 1;
}

void ModelBuilder::op(Operator o) {
  for (int t : o.inputs) AGILENN_CHECK(t >= 0 && t < static_cast<int>(tensors_.size()), "TFLite op: no tensor " << t);
  for (int t : o.outputs) AGILENN_CHECK(t >= 0 && t < static_cast<int>(tensors_.size()), "TFLite op: no tensor " << t);
  ops_.push_back(std::move(o));
}

void ModelBuilder::conv2d(int input, int filter, int bias, int output, int stride, Activation act) {
  op({OpKind::conv2d, {input, filter, bias}, {output}, stride, 0, 0, 0, act});
}

void ModelBuilder::depthwise_conv2d(int input, int filter, int bias, int output, int stride, Activation act) {
  op({OpKind::depthwise_conv2d, {input, filter, bias}, {output}, stride, 0, 0, 0, act});
}

void ModelBuilder::average_pool(int input, int output, int filter_height, int filter_width) {
  op({OpKind::average_pool, {input}, {output}, 1, filter_height, filter_width, 0, Activation::none});
}

void ModelBuilder::fully_connected(int input, int weights, int bias, int output) {
  op({OpKind::fully_connected, {input, weights, bias}, {output}, 1, 0, 0, 0, Activation::none});
}

void ModelBuilder::cast(int input, int output) {
  op({OpKind::cast, {input}, {output}, 1, 0, 0, 0, Activation::none});
}

void ModelBuilder::gather(int params, int indices, int output, int axis) {
  op({OpKind::gather, {params, indices}, {output}, 1, 0, 0, axis, Activation::none});
}

namespace {

// An op as the schema has it: its BuiltinOperator, and its BuiltinOptions table as
// (field number, value, width in bytes) of scalar fields.
struct SchemaOp {
  int32_t code;
  uint8_t options_type;
  std::vector<std::tuple<int, int32_t, int>> options;
};

SchemaOp schema_op(const Operator& o, const std::vector<TensorInfo>& tensors) {
  const auto act = static_cast<int32_t>(o.activation);
  switch (o.kind) {
    case OpKind::conv2d:
      return {kConv2d, kConv2dOptions, {{0, kPaddingSame, 1}, {1, o.stride, 4}, {2, o.stride, 4}, {3, act, 1}}};
    case OpKind::depthwise_conv2d:
      return {kDepthwiseConv2d, kDepthwiseConv2dOptions,
              {{0, kPaddingSame, 1}, {1, o.stride, 4}, {2, o.stride, 4}, {3, 1, 4}, {4, act, 1}}};
    case OpKind::average_pool:
      return {kAveragePool2d, kPool2dOptions,
              {{0, kPaddingValid, 1}, {1, 1, 4}, {2, 1, 4}, {3, o.filter_width, 4}, {4, o.filter_height, 4}, {5, act, 1}}};
    case OpKind::fully_connected: return {kFullyConnected, kFullyConnectedOptions, {{0, act, 1}}};
    case OpKind::cast:
      return {kCast, kCastOptions,
              {{0, static_cast<int32_t>(tensors.at(static_cast<size_t>(o.inputs[0])).type), 1},
               {1, static_cast<int32_t>(tensors.at(static_cast<size_t>(o.outputs[0])).type), 1}}};
    case OpKind::gather: return {kGather, kGatherOptions, {{0, o.axis, 4}}};
  }
  AGILENN_THROW("TFLite: an op of no known kind");
}

}  // namespace

std::string ModelBuilder::serialize(const std::vector<int>& inputs, const std::vector<int>& outputs,
                                    const std::string& description) const {
  flatbuffers::FlatBufferBuilder b(1 << 16);
  // Buffer 0 is the empty one computed tensors point at, by the schema's convention.
  std::vector<flatbuffers::Offset<void>> buffers{Table(b).end()};
  std::vector<flatbuffers::Offset<void>> tensors;
  for (const TensorInfo& t : tensors_) {
    uint32_t buffer = 0;
    if (!t.data.empty()) {
      b.ForceVectorAlignment(t.data.size(), 1, 16);
      const auto data = b.CreateVector(reinterpret_cast<const uint8_t*>(t.data.data()), t.data.size());
      buffers.push_back(Table(b).offset(0, data).end());
      buffer = static_cast<uint32_t>(buffers.size() - 1);
    }
    flatbuffers::Offset<void> quantization;
    if (t.quantized) {
      const auto scale = b.CreateVector(t.q.scale);
      const auto zero_point = b.CreateVector(t.q.zero_point);
      quantization = Table(b).offset(2, scale).offset(3, zero_point).scalar<int32_t>(6, t.q.axis).end();
    }
    std::vector<int32_t> shape;
    for (int64_t d : t.shape) shape.push_back(static_cast<int32_t>(d));
    const auto shape_v = b.CreateVector(shape);
    const auto name = b.CreateString(t.name);
    tensors.push_back(Table(b)
                          .offset(0, shape_v)
                          .scalar<int8_t>(1, static_cast<int8_t>(t.type))
                          .scalar<uint32_t>(2, buffer)
                          .offset(3, name)
                          .offset(4, quantization)
                          .end());
  }
  std::map<int32_t, uint32_t> code_index;
  std::vector<flatbuffers::Offset<void>> codes, operators;
  for (const Operator& op : ops_) {
    const SchemaOp o = schema_op(op, tensors_);
    if (!code_index.count(o.code)) {
      code_index[o.code] = static_cast<uint32_t>(codes.size());
      // Codes below 127 also go in the deprecated byte field, which older readers use.
      codes.push_back(Table(b)
                          .scalar<int8_t>(0, static_cast<int8_t>(std::min(o.code, 127)))
                          .scalar<int32_t>(2, op_version(o.code), 1)
                          .scalar<int32_t>(3, o.code)
                          .end());
    }
    Table options(b);
    for (const auto& [id, value, width] : o.options) {
      if (width == 1) options.scalar<int8_t>(id, static_cast<int8_t>(value));
      else options.scalar<int32_t>(id, value);
    }
    const auto options_table = options.end();
    const auto in = b.CreateVector(std::vector<int32_t>(op.inputs.begin(), op.inputs.end()));
    const auto out = b.CreateVector(std::vector<int32_t>(op.outputs.begin(), op.outputs.end()));
    operators.push_back(Table(b)
                            .scalar<uint32_t>(0, code_index.at(o.code))
                            .offset(1, in)
                            .offset(2, out)
                            .scalar<uint8_t>(3, o.options_type)
                            .offset(4, options_table)
                            .end());
  }
  const auto tensors_v = b.CreateVector(tensors);
  const auto inputs_v = b.CreateVector(std::vector<int32_t>(inputs.begin(), inputs.end()));
  const auto outputs_v = b.CreateVector(std::vector<int32_t>(outputs.begin(), outputs.end()));
  const auto operators_v = b.CreateVector(operators);
  const auto graph_name = b.CreateString("main");
  const auto subgraph =
      Table(b).offset(0, tensors_v).offset(1, inputs_v).offset(2, outputs_v).offset(3, operators_v).offset(4, graph_name).end();
  const auto codes_v = b.CreateVector(codes);
  const auto subgraphs_v = b.CreateVector(std::vector<flatbuffers::Offset<void>>{subgraph});
  const auto description_s = b.CreateString(description);
  const auto buffers_v = b.CreateVector(buffers);
  const auto model = Table(b)
                         .scalar<uint32_t>(0, kSchemaVersion)
                         .offset(1, codes_v)
                         .offset(2, subgraphs_v)
                         .offset(3, description_s)
                         .offset(4, buffers_v)
                         .end();
  b.Finish(model, "TFL3");
  return std::string(reinterpret_cast<const char*>(b.GetBufferPointer()), b.GetSize());
}

int64_t ModelBuilder::constant_bytes() const {
  int64_t n = 0;
  for (const TensorInfo& t : tensors_) n += static_cast<int64_t>(t.data.size());
  return n;
}

std::vector<ModelBuilder::Lifetime> ModelBuilder::lifetimes(const std::vector<int>& inputs,
                                                             const std::vector<int>& outputs) const {
  const int last = static_cast<int>(ops_.size()) - 1;
  std::vector<Lifetime> life(tensors_.size());
  for (int t : inputs) life[static_cast<size_t>(t)].first = 0;
  for (int i = 0; i <= last; ++i) {
    const Operator& o = ops_[static_cast<size_t>(i)];
    for (int t : o.outputs) {
      Lifetime& l = life[static_cast<size_t>(t)];
      if (l.first < 0) l.first = i;
      l.last = std::max(l.last, i);
    }
    for (int t : o.inputs) life[static_cast<size_t>(t)].last = i;
  }
  for (int t : outputs) life[static_cast<size_t>(t)].last = last;
  for (size_t t = 0; t < tensors_.size(); ++t)
    if (!tensors_[t].data.empty()) life[t] = {};
  return life;
}

int64_t ModelBuilder::peak_activation_bytes(const std::vector<int>& inputs, const std::vector<int>& outputs) const {
  const std::vector<Lifetime> life = lifetimes(inputs, outputs);
  int64_t peak = 0;
  for (int i = 0; i < static_cast<int>(ops_.size()); ++i) {
    int64_t live = 0;
    for (size_t t = 0; t < tensors_.size(); ++t)
      if (life[t].first >= 0 && life[t].first <= i && life[t].last >= i) live += tensors_[t].bytes();
    peak = std::max(peak, live);
  }
  return peak;
}

}  // namespace agilenn::exporting::tflite
