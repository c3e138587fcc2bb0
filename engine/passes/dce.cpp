// Dead-code elimination: what the requested outputs need.
#include "engine/passes/passes.h"

namespace agilenn {

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
