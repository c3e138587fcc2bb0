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

std::vector<NodeId> live_nodes(const Graph& graph, const std::vector<NodeId>& outputs,
                               const std::vector<NodeId>& canonical) {
  std::vector<bool> live(graph.size(), false);
  for (NodeId o : outputs) live[static_cast<size_t>(canonical[static_cast<size_t>(o)])] = true;
  for (size_t id = graph.size(); id-- > 0;) {
    if (!live[id]) continue;
    for (NodeId in : graph.node(static_cast<NodeId>(id)).inputs)
      live[static_cast<size_t>(canonical[static_cast<size_t>(in)])] = true;
  }
  std::vector<NodeId> order;
  for (size_t id = 0; id < graph.size(); ++id)
    if (live[id]) order.push_back(static_cast<NodeId>(id));
  return order;
}

}  // namespace agilenn
