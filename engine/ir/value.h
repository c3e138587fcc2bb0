// A Value names one node of a Graph; the builder API (ops.h) and vjp rules pass Values.
#pragma once

#include "engine/ir/graph.h"

namespace agilenn {

class Value {
 public:
  Value() = default;
  Value(Graph* graph, NodeId id) : graph_(graph), id_(id) {}

  bool valid() const { return graph_ != nullptr && id_ != kNoNode; }
  Graph& graph() const { return *graph_; }
  NodeId id() const { return id_; }
  const Node& node() const { return graph_->node(id_); }
  const Shape& shape() const { return node().shape; }
  DType dtype() const { return node().dtype; }
  size_t rank() const { return shape().size(); }
  // Negative i counts from the end.
  int64_t dim(int64_t i) const;

 private:
  Graph* graph_ = nullptr;
  NodeId id_ = kNoNode;
};

}  // namespace agilenn
