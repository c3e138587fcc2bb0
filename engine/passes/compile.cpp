// The passes in order: CSE, DCE, then the memory plan.
#include "engine/core/error.h"
#include "engine/passes/passes.h"

namespace agilenn {

Plan compile(const Graph& graph, const std::vector<NodeId>& outputs) {
  for (NodeId o : outputs)
    AGILENN_CHECK(o >= 0 && static_cast<size_t>(o) < graph.size(), "compile: output node " << o << " does not exist");
  Plan plan;
  plan.canonical = common_subexpressions(graph);
  for (NodeId o : outputs) plan.outputs.push_back(plan.canonical[static_cast<size_t>(o)]);
  plan.order = live_nodes(graph, outputs, plan.canonical);
  plan.memory = plan_memory(graph, plan.order, outputs, plan.canonical);
  return plan;
}

}  // namespace agilenn
