#include "engine/ir/graph.h"

#include <sstream>

#include "engine/core/error.h"
#include "engine/ir/registry.h"

namespace agilenn {

const AttrValue& Attrs::at(const std::string& key) const {
  auto it = values_.find(key);
  AGILENN_CHECK(it != values_.end(), "missing attribute '" << key << "'");
  return it->second;
}

int64_t Attrs::i(const std::string& key) const {
  const AttrValue& v = at(key);
  AGILENN_CHECK(std::holds_alternative<int64_t>(v), "attribute '" << key << "' is not an integer");
  return std::get<int64_t>(v);
}

double Attrs::f(const std::string& key) const {
  const AttrValue& v = at(key);
  if (std::holds_alternative<int64_t>(v)) return static_cast<double>(std::get<int64_t>(v));
  AGILENN_CHECK(std::holds_alternative<double>(v), "attribute '" << key << "' is not a number");
  return std::get<double>(v);
}

const std::vector<int64_t>& Attrs::ints(const std::string& key) const {
  const AttrValue& v = at(key);
  AGILENN_CHECK(std::holds_alternative<std::vector<int64_t>>(v),
                "attribute '" << key << "' is not an integer list");
  return std::get<std::vector<int64_t>>(v);
}

const std::string& Attrs::s(const std::string& key) const {
  const AttrValue& v = at(key);
  AGILENN_CHECK(std::holds_alternative<std::string>(v), "attribute '" << key << "' is not a string");
  return std::get<std::string>(v);
}

std::string Attrs::str() const {
  std::ostringstream os;
  os.precision(17);
  bool first = true;
  for (const auto& [k, v] : values_) {
    os << (first ? "" : ", ") << k << '=';
    first = false;
    if (auto* i = std::get_if<int64_t>(&v)) os << *i;
    else if (auto* d = std::get_if<double>(&v)) os << *d << 'f';
    else if (auto* l = std::get_if<std::vector<int64_t>>(&v)) os << shape_str(*l);
    else os << '"' << std::get<std::string>(v) << '"';
  }
  return os.str();
}

const std::string& Node::op_name() const { return op->name; }

NodeId Graph::add(const std::string& op_name, std::vector<NodeId> inputs, Attrs attrs) {
  const OpDef& def = OpRegistry::instance().get(op_name);
  for (NodeId in : inputs)
    AGILENN_CHECK(in >= 0 && static_cast<size_t>(in) < nodes_.size(),
                  "op '" << op_name << "': input node " << in << " does not exist in this graph");
  TypeInfo t;
  try {
    t = def.shape(*this, inputs, attrs);
  } catch (const Error& e) {
    std::ostringstream os;
    os << "op '" << op_name << "'";
    for (size_t i = 0; i < inputs.size(); ++i) {
      const Node& n = node(inputs[i]);
      os << (i ? ", " : " on ") << shape_str(n.shape) << ' ' << dtype_name(n.dtype);
    }
    if (!attrs.str().empty()) os << " {" << attrs.str() << '}';
    os << ": " << e.what();
    throw Error(os.str());
  }
  Node n;
  n.id = static_cast<NodeId>(nodes_.size());
  n.op = &def;
  n.attrs = std::move(attrs);
  n.inputs = std::move(inputs);
  n.shape = std::move(t.shape);
  n.dtype = t.dtype;
  nodes_.push_back(std::move(n));
  return nodes_.back().id;
}

NodeId Graph::leaf(const std::string& name, Shape shape, DType dtype, LeafKind kind) {
  AGILENN_CHECK(!name.empty(), "a graph leaf needs a name");
  AGILENN_CHECK(!leaf_by_name_.count(name), "graph already has a leaf named '" << name << "'");
  Attrs a{{"name", name},
          {"kind", static_cast<int64_t>(kind)},
          {"shape", shape},
          {"dtype", static_cast<int64_t>(dtype)}};
  NodeId id = add("leaf", {}, std::move(a));
  leaf_by_name_[name] = id;
  return id;
}

NodeId Graph::find_leaf(const std::string& name) const {
  auto it = leaf_by_name_.find(name);
  return it == leaf_by_name_.end() ? kNoNode : it->second;
}

std::vector<NodeId> Graph::leaves(LeafKind kind) const {
  std::vector<NodeId> out;
  for (const Node& n : nodes_)
    if (n.op_name() == "leaf" && n.attrs.i("kind") == static_cast<int64_t>(kind)) out.push_back(n.id);
  return out;
}

std::string Graph::describe(NodeId id) const {
  const Node& n = node(id);
  std::ostringstream os;
  os << '%' << id << " = " << n.op_name() << '(';
  for (size_t i = 0; i < n.inputs.size(); ++i) os << (i ? ", %" : "%") << n.inputs[i];
  os << ')';
  if (!n.attrs.str().empty()) os << " {" << n.attrs.str() << '}';
  os << " : " << shape_str(n.shape) << ' ' << dtype_name(n.dtype);
  return os.str();
}

}  // namespace agilenn
