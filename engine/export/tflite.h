// TFLite models (flatbuffers, schema version 3) written with the flatbuffers library's table
// builder by the field numbers of TFLite's schema: one subgraph, the builtin ops the int8
// device half uses, constant tensors in buffers of their own. What the builder records also
// gives the model's memory budget (the constants' bytes; the activations' peak under a
// liveness plan).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/core/tensor.h"

namespace agilenn::exporting::tflite {

// TensorType values of the schema.
enum class Type : int8_t { f32 = 0, i32 = 2, u8 = 3, i8 = 9 };
int64_t type_size(Type t);

// Affine quantization: real = scale · (q − zero_point), per tensor (one scale) or per
// channel along `axis`.
struct Quantization {
  std::vector<float> scale;
  std::vector<int64_t> zero_point;
  int32_t axis = 0;
};

struct TensorInfo {
  std::string name;
  Shape shape;
  Type type;
  std::string data;  // constant: its bytes, little-endian; empty: computed
  bool quantized = false;
  Quantization q;
  int64_t bytes() const;
};

enum class Activation : int8_t { none = 0, relu6 = 3 };

enum class OpKind { conv2d, depthwise_conv2d, average_pool, fully_connected, cast, gather };

struct Operator {
  OpKind kind;
  std::vector<int> inputs, outputs;  // tensor indices
  int stride = 1;                    // convolutions (SAME padding)
  int filter_height = 0, filter_width = 0;  // average_pool (VALID padding)
  int axis = 0;                      // gather
  Activation activation = Activation::none;
};

class ModelBuilder {
 public:
  int tensor(TensorInfo t);
  // SAME padding; filter [O,KH,KW,I] (conv) or [1,KH,KW,C] (depthwise, multiplier 1).
  void conv2d(int input, int filter, int bias, int output, int stride, Activation act);
  void depthwise_conv2d(int input, int filter, int bias, int output, int stride, Activation act);
  // weights [O,I]
  void fully_connected(int input, int weights, int bias, int output);
  // One window over the whole input (VALID): [1,H,W,C] → [1,1,1,C].
  void average_pool(int input, int output, int filter_height, int filter_width);
  void cast(int input, int output);
  void gather(int params, int indices, int output, int axis);

  // The model's bytes, identifier "TFL3".
  std::string serialize(const std::vector<int>& inputs, const std::vector<int>& outputs,
                        const std::string& description) const;

  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const std::vector<Operator>& ops() const { return ops_; }
  int64_t constant_bytes() const;
  // When each computed tensor is alive as the ops run in order, by op index: from the op that
  // writes it (0, for a model input) to the last op that reads it (the last op, for a model
  // output); {-1, -1} for a constant or a tensor no op touches.
  struct Lifetime {
    int first = -1, last = -1;
  };
  std::vector<Lifetime> lifetimes(const std::vector<int>& inputs, const std::vector<int>& outputs) const;
  // The most bytes of computed tensors (inputs and outputs included) alive at once, an op's
  // inputs and outputs alive together.
  int64_t peak_activation_bytes(const std::vector<int>& inputs, const std::vector<int>& outputs) const;

 private:
  std::vector<TensorInfo> tensors_;
  std::vector<Operator> ops_;
  void op(Operator o);
};

}  // namespace agilenn::exporting::tflite
