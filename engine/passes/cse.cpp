// Common-subexpression elimination.
#include <string>
#include <unordered_map>

#include "engine/ir/registry.h"
#include "engine/passes/passes.h"

namespace agilenn {

std::vector<NodeId> common_subexpressions(const Graph& graph) {
  std::vector<NodeId> canonical(graph.size());
  std::unordered_map<std::string, NodeId> seen;
  for (const Node& n : graph.nodes()) {
    canonical[static_cast<size_t>(n.id)] = n.id;
    if (n.op_name() == "leaf") continue;
    std::string key = n.op_name();
    key += '(';
    for (NodeId in : n.inputs) key += std::to_string(canonical[static_cast<size_t>(in)]) + ',';
    key += ')' + n.attrs.str() + shape_str(n.shape) + dtype_name(n.dtype);
    auto [it, inserted] = seen.emplace(std::move(key), n.id);
    if (!inserted) canonical[static_cast<size_t>(n.id)] = it->second;
  }
  return canonical;
}

}  // namespace agilenn
