// The static graph IR: an append-only list of single-output nodes in topological order.
// `grad` appends to the same graph, so a gradient graph is an ordinary graph.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include "engine/core/tensor.h"

namespace agilenn {

using NodeId = int32_t;
constexpr NodeId kNoNode = -1;

using AttrValue = std::variant<int64_t, double, std::vector<int64_t>, std::string>;

class Attrs {
 public:
  Attrs() = default;
  Attrs(std::initializer_list<std::pair<const std::string, AttrValue>> init) : values_(init) {}

  Attrs& set(const std::string& key, AttrValue v) {
    values_[key] = std::move(v);
    return *this;
  }
  bool has(const std::string& key) const { return values_.count(key) != 0; }
  int64_t i(const std::string& key) const;
  double f(const std::string& key) const;
  const std::vector<int64_t>& ints(const std::string& key) const;
  const std::string& s(const std::string& key) const;

  // Canonical text form; equal attrs give equal text (used by CSE and messages).
  std::string str() const;

 private:
  const AttrValue& at(const std::string& key) const;
  std::map<std::string, AttrValue> values_;
};

struct OpDef;

struct Node {
  NodeId id = kNoNode;
  const OpDef* op = nullptr;
  Attrs attrs;
  std::vector<NodeId> inputs;
  Shape shape;
  DType dtype = DType::f32;

  const std::string& op_name() const;
};

// What a graph leaf stands for at run time.
enum class LeafKind : uint8_t { input, parameter, state };

class Graph {
 public:
  Graph() = default;
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;
  Graph(Graph&&) = default;
  Graph& operator=(Graph&&) = default;

  // Appends a node of a registered op; runs its shape rule, which throws naming the op.
  NodeId add(const std::string& op, std::vector<NodeId> inputs, Attrs attrs = {});

  // A named leaf fed at run time.
  NodeId leaf(const std::string& name, Shape shape, DType dtype, LeafKind kind = LeafKind::input);

  // The reference stays valid for the graph's lifetime: appends never move nodes.
  const Node& node(NodeId id) const { return nodes_.at(static_cast<size_t>(id)); }
  size_t size() const { return nodes_.size(); }
  const std::deque<Node>& nodes() const { return nodes_; }

  // Leaf lookup by name; kNoNode when absent.
  NodeId find_leaf(const std::string& name) const;
  std::vector<NodeId> leaves(LeafKind kind) const;

  std::string describe(NodeId id) const;

 private:
  // A deque, not a vector: push_back never moves existing elements, so references and
  // pointers handed out by node() (and Value::shape(), VjpContext::node) survive appends.
  // They must: grad appends vjp nodes while rules and builders still hold such references
  // (e.g. ops::sum_to(x, y.shape()) builds nodes before reading the shape). A vector's
  // reallocation turned those into use-after-free.
  std::deque<Node> nodes_;
  std::map<std::string, NodeId> leaf_by_name_;
};

}  // namespace agilenn
