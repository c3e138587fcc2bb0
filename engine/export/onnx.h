// Engine graphs as ONNX models (float32 arithmetic, opset 17), for runtimes outside the
// engine (onnxruntime on a server, say).
#pragma once

#include <string>
#include <vector>

#include "engine/nn/params.h"

namespace agilenn::exporting {

constexpr int64_t kOnnxOpset = 17;

struct OnnxPort {
  std::string name;  // the ONNX model's input or output name
  Value value;
};

// The part of `graph` that computes `outputs` from the input leaves `inputs`, as a serialized
// ONNX ModelProto that onnx's checker accepts. Parameter and state leaves take their values
// from `values`; every node computed from them alone is evaluated here (on the CPU backend)
// and stored as an initializer, so batch norms, centroid values and the mix weights arrive
// folded. The engine's NHWC convolutions become NCHW Conv nodes between transposes. Throws
// naming the op for a node that has no ONNX form, and naming the leaf for an input leaf not
// among `inputs`.
std::string to_onnx(const Graph& graph, const std::vector<OnnxPort>& inputs, const std::vector<OnnxPort>& outputs,
                    const nn::TensorMap& values, const std::string& name);

}  // namespace agilenn::exporting
