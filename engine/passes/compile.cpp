// The passes in order: CSE, DCE, rematerialisation and fusion when asked for, then the
// memory plan.
#include "engine/core/error.h"
#include "engine/passes/passes.h"

namespace agilenn {
namespace {

Plan without_memory(const Graph& graph, const std::vector<NodeId>& outputs) {
  for (NodeId o : outputs)
    AGILENN_CHECK(o >= 0 && static_cast<size_t>(o) < graph.size(), "compile: output node " << o << " does not exist");
  Plan plan;
  plan.canonical = common_subexpressions(graph);
  for (NodeId o : outputs) plan.outputs.push_back(plan.canonical[static_cast<size_t>(o)]);
  plan.order = live_nodes(graph, outputs, plan.canonical);
  for (NodeId id : plan.order) {
    std::vector<NodeId>& r = plan.reads.emplace_back();
    for (NodeId in : graph.node(id).inputs) r.push_back(plan.canonical[static_cast<size_t>(in)]);
  }
  return plan;
}

}  // namespace

Plan compile(const Graph& graph, const std::vector<NodeId>& outputs) {
  Plan plan = without_memory(graph, outputs);
  plan.memory = plan_memory(graph, plan.order, plan.reads, plan.outputs);
  return plan;
}

Plan compile(Graph& graph, const std::vector<NodeId>& outputs, const CompileOptions& options) {
  Plan plan = without_memory(graph, outputs);
  if (options.memory_budget) {  // its starting point, the plan keeping every value, is reported
    plan.live_peak_without_remat = plan_memory(graph, plan.order, plan.reads, plan.outputs).live_peak_bytes;
    if (plan.live_peak_without_remat > *options.memory_budget)
      plan.recomputed = rematerialise(graph, plan, *options.memory_budget);
  }
  if (options.fuse) plan.fused = fuse_elementwise(graph, plan);
  plan.memory = plan_memory(graph, plan.order, plan.reads, plan.outputs);
  return plan;
}

}  // namespace agilenn
