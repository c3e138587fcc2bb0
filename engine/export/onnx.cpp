#include "engine/export/onnx.h"

#include <onnx/checker.h>
#include <onnx/onnx_pb.h>

#include <set>

#include "engine/core/error.h"
#include "engine/runtime/executor.h"

namespace agilenn::exporting {
namespace {

int32_t onnx_type(DType t) {
  switch (t) {
    case DType::f32:
    case DType::f64: return onnx::TensorProto::FLOAT;  // float32 arithmetic
    case DType::i32: return onnx::TensorProto::INT32;
    case DType::u8: return onnx::TensorProto::UINT8;
  }
  return onnx::TensorProto::UNDEFINED;
}

void set_value_info(onnx::ValueInfoProto* v, const std::string& name, const Shape& shape, DType dtype) {
  v->set_name(name);
  onnx::TypeProto_Tensor* t = v->mutable_type()->mutable_tensor_type();
  t->set_elem_type(onnx_type(dtype));
  for (int64_t d : shape) t->mutable_shape()->add_dim()->set_dim_value(d);
}

class Builder {
 public:
  explicit Builder(onnx::GraphProto* g) : g_(g) {}

  onnx::NodeProto* node(const std::string& op, const std::vector<std::string>& in, const std::string& out) {
    onnx::NodeProto* n = g_->add_node();
    n->set_op_type(op);
    n->set_name(out);
    for (const std::string& i : in) n->add_input(i);
    n->add_output(out);
    return n;
  }
  // A fresh tensor name for an intermediate result.
  std::string temp(const std::string& base) { return base + "_" + std::to_string(temps_++); }

  std::string initializer(const std::string& name, const Tensor& t) {
    onnx::TensorProto* p = g_->add_initializer();
    p->set_name(name);
    for (int64_t d : t.shape()) p->add_dims(d);
    const Tensor host = t.dtype() == DType::f64 ? t.to(DType::f32) : t;
    p->set_data_type(onnx_type(host.dtype()));
    p->set_raw_data(std::string(static_cast<const char*>(host.raw()), host.nbytes()));
    return name;
  }
  std::string ints(const std::string& name, const std::vector<int64_t>& v) {
    onnx::TensorProto* p = g_->add_initializer();
    p->set_name(name);
    p->add_dims(static_cast<int64_t>(v.size()));
    p->set_data_type(onnx::TensorProto::INT64);
    for (int64_t x : v) p->add_int64_data(x);
    return name;
  }
  std::string scalar(const std::string& name, double v) {
    return initializer(name, Tensor::scalar(v, DType::f32));
  }

 private:
  onnx::GraphProto* g_;
  int64_t temps_ = 0;
};

void attr(onnx::NodeProto* n, const std::string& name, int64_t v) {
  onnx::AttributeProto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(v);
}

void attr(onnx::NodeProto* n, const std::string& name, const std::vector<int64_t>& v) {
  onnx::AttributeProto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INTS);
  for (int64_t x : v) a->add_ints(x);
}

}  // namespace

std::string to_onnx(const Graph& graph, const std::vector<OnnxPort>& inputs, const std::vector<OnnxPort>& outputs,
                    const nn::TensorMap& values, const std::string& name) {
  // The nodes the outputs need, back to the inputs.
  std::set<NodeId> input_ids, needed;
  for (const OnnxPort& p : inputs) input_ids.insert(p.value.id());
  std::vector<NodeId> stack;
  for (const OnnxPort& p : outputs) stack.push_back(p.value.id());
  while (!stack.empty()) {
    const NodeId id = stack.back();
    stack.pop_back();
    if (!needed.insert(id).second || input_ids.count(id)) continue;
    for (NodeId i : graph.node(id).inputs) stack.push_back(i);
  }
  // Constant: a parameter or state leaf, a node without inputs, or one computed from constants.
  std::set<NodeId> constant;
  for (NodeId id : needed) {  // ascending ids: a node's inputs come before it
    const Node& n = graph.node(id);
    if (input_ids.count(id)) continue;
    if (n.op_name() == "leaf") {
      const std::string& leaf = n.attrs.s("name");
      AGILENN_CHECK(n.attrs.i("kind") != static_cast<int64_t>(LeafKind::input),
                    "ONNX export of '" << name << "': input leaf '" << leaf << "' is not among the model's inputs");
      AGILENN_CHECK(values.count(leaf), "ONNX export of '" << name << "': no value for '" << leaf << "'");
      constant.insert(id);
      continue;
    }
    if (std::all_of(n.inputs.begin(), n.inputs.end(), [&](NodeId i) { return constant.count(i) > 0; }))
      constant.insert(id);
  }
  // Constants used by computed nodes (or as outputs) are evaluated now.
  std::vector<NodeId> folded;
  for (NodeId id : needed) {
    if (constant.count(id)) continue;
    for (NodeId i : graph.node(id).inputs)
      if (constant.count(i)) folded.push_back(i);
  }
  for (const OnnxPort& p : outputs)
    if (constant.count(p.value.id())) folded.push_back(p.value.id());
  std::sort(folded.begin(), folded.end());
  folded.erase(std::unique(folded.begin(), folded.end()), folded.end());
  Feeds feeds;
  for (NodeId id : needed)
    if (graph.node(id).op_name() == "leaf" && constant.count(id)) {
      const std::string& leaf = graph.node(id).attrs.s("name");
      feeds[leaf] = values.at(leaf).to(graph.node(id).dtype);
    }
  const std::vector<Tensor> folded_values = folded.empty() ? std::vector<Tensor>{} : evaluate(graph, folded, feeds, cpu_backend());

  onnx::ModelProto model;
  model.set_ir_version(8);
  model.set_producer_name("agilenn");
  model.add_opset_import()->set_version(kOnnxOpset);
  onnx::GraphProto* g = model.mutable_graph();
  g->set_name(name);
  Builder b(g);
  std::map<NodeId, std::string> tensor;  // the ONNX tensor holding each node's value
  for (const OnnxPort& p : inputs) {
    set_value_info(g->add_input(), p.name, p.value.shape(), p.value.dtype());
    tensor[p.value.id()] = p.name;
  }
  std::map<NodeId, Tensor> folded_by_id;
  for (size_t k = 0; k < folded.size(); ++k) folded_by_id[folded[k]] = folded_values[k];
  // A folded constant becomes an initializer where a node reads it as it is (a conv reads
  // its filter transposed instead).
  auto value_of = [&](NodeId id) -> const std::string& {
    if (!tensor.count(id)) tensor[id] = b.initializer("c" + std::to_string(id), folded_by_id.at(id));
    return tensor.at(id);
  };

  for (NodeId id : needed) {
    if (input_ids.count(id) || constant.count(id)) continue;
    const Node& n = graph.node(id);
    const std::string& op = n.op_name();
    const std::string out = "t" + std::to_string(id);
    std::vector<std::string> in;
    for (size_t k = 0; k < n.inputs.size(); ++k)
      in.push_back(op == "conv2d" && k == 1 ? std::string() : value_of(n.inputs[k]));
    static const std::map<std::string, std::string> same_op{
        {"add", "Add"},   {"sub", "Sub"},         {"mul", "Mul"},     {"div", "Div"},   {"maximum", "Max"},
        {"minimum", "Min"}, {"abs", "Abs"},       {"neg", "Neg"},     {"exp", "Exp"},   {"log", "Log"},
        {"sqrt", "Sqrt"}, {"sigmoid", "Sigmoid"}, {"tanh", "Tanh"}};
    if (const auto it = same_op.find(op); it != same_op.end()) {
      b.node(it->second, in, out);
    } else if (op == "rsqrt") {
      const std::string root = b.temp(out);
      b.node("Sqrt", in, root);
      b.node("Reciprocal", {root}, out);
    } else if (op == "clamp") {
      b.node("Clip", {in[0], b.scalar(b.temp(out), n.attrs.f("lo")), b.scalar(b.temp(out), n.attrs.f("hi"))}, out);
    } else if (op == "mean") {
      onnx::NodeProto* r = b.node("ReduceMean", in, out);
      attr(r, "axes", n.attrs.ints("axes"));
      attr(r, "keepdims", n.attrs.i("keepdims"));
    } else if (op == "sum") {
      attr(b.node("ReduceSum", {in[0], b.ints(b.temp(out), n.attrs.ints("axes"))}, out), "keepdims", n.attrs.i("keepdims"));
    } else if (op == "matmul") {
      AGILENN_CHECK(n.shape.size() == 2, "ONNX export: matmul of rank " << n.shape.size() << " (only 2)");
      onnx::NodeProto* r = b.node("Gemm", in, out);
      attr(r, "transA", n.attrs.i("transpose_a"));
      attr(r, "transB", n.attrs.i("transpose_b"));
    } else if (op == "conv2d") {
      // NHWC → NCHW, Conv with an OIHW filter, back to NHWC.
      AGILENN_CHECK(folded_by_id.count(n.inputs[1]), "ONNX export: conv2d with a computed filter");
      const Tensor& w = folded_by_id.at(n.inputs[1]);  // [KH,KW,C/groups,O]
      const std::string filter = b.initializer(b.temp(out), w.permuted({3, 2, 0, 1}));
      const std::string nchw = b.temp(out), conv = b.temp(out);
      attr(b.node("Transpose", {in[0]}, nchw), "perm", std::vector<int64_t>{0, 3, 1, 2});
      onnx::NodeProto* c = b.node("Conv", {nchw, filter}, conv);
      const std::vector<int64_t>& p = n.attrs.ints("pads");  // top, bottom, left, right
      attr(c, "pads", std::vector<int64_t>{p[0], p[2], p[1], p[3]});
      attr(c, "strides", n.attrs.ints("stride"));
      attr(c, "dilations", n.attrs.ints("dilation"));
      attr(c, "group", n.attrs.i("groups"));
      attr(c, "kernel_shape", std::vector<int64_t>{w.shape()[0], w.shape()[1]});
      attr(b.node("Transpose", {conv}, out), "perm", std::vector<int64_t>{0, 2, 3, 1});
    } else if (op == "slice") {
      const std::vector<int64_t>& begin = n.attrs.ints("begin");
      std::vector<int64_t> axes(begin.size());
      for (size_t a = 0; a < axes.size(); ++a) axes[a] = static_cast<int64_t>(a);
      b.node("Slice", {in[0], b.ints(b.temp(out), begin), b.ints(b.temp(out), n.attrs.ints("end")), b.ints(b.temp(out), axes)},
             out);
    } else if (op == "reshape") {
      b.node("Reshape", {in[0], b.ints(b.temp(out), n.shape)}, out);
    } else if (op == "broadcast_to") {
      b.node("Expand", {in[0], b.ints(b.temp(out), n.shape)}, out);
    } else if (op == "transpose") {
      attr(b.node("Transpose", in, out), "perm", n.attrs.ints("perm"));
    } else if (op == "softmax") {
      attr(b.node("Softmax", in, out), "axis", n.attrs.i("axis"));
    } else if (op == "argmin") {
      // ONNX's ArgMin gives int64 (the first of equal minima, as the engine's); the engine's is int32.
      const std::string index = b.temp(out);
      onnx::NodeProto* r = b.node("ArgMin", in, index);
      attr(r, "axis", n.attrs.i("axis"));
      attr(r, "keepdims", int64_t{0});
      attr(b.node("Cast", {index}, out), "to", int64_t{onnx::TensorProto::INT32});
    } else if (op == "cast") {
      attr(b.node("Cast", in, out), "to", int64_t{onnx_type(n.dtype)});
    } else if (op == "gather") {
      attr(b.node("Gather", in, out), "axis", n.attrs.i("axis"));
    } else {
      AGILENN_THROW("ONNX export of '" << name << "': op '" << op << "' has no ONNX form here");
    }
    tensor[id] = out;
  }
  for (const OnnxPort& p : outputs) {
    b.node("Identity", {value_of(p.value.id())}, p.name);
    set_value_info(g->add_output(), p.name, p.value.shape(), p.value.dtype());
  }
  try {
    onnx::checker::check_model(model);
  } catch (const std::exception& e) {
    AGILENN_THROW("ONNX export of '" << name << "': the model fails onnx's checker: " << e.what());
  }
  return model.SerializeAsString();
}

}  // namespace agilenn::exporting
