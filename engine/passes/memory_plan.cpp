#include <algorithm>
#include <unordered_map>

#include "engine/core/error.h"
#include "engine/ir/registry.h"
#include "engine/passes/passes.h"

namespace agilenn {
namespace {

bool lifetimes_overlap(const Buffer& a, const Buffer& b) { return a.first <= b.last && b.first <= a.last; }
bool bytes_overlap(const Buffer& a, const Buffer& b) {
  return a.offset < b.offset + b.bytes && b.offset < a.offset + a.bytes;
}

}  // namespace

MemoryPlan plan_memory(const Graph& graph, const std::vector<NodeId>& order, const std::vector<NodeId>& outputs,
                       const std::vector<NodeId>& canonical) {
  std::unordered_map<NodeId, size_t> step_of;
  for (size_t s = 0; s < order.size(); ++s) step_of[order[s]] = s;
  std::vector<bool> is_output(graph.size(), false);
  for (NodeId o : outputs) is_output[static_cast<size_t>(canonical[static_cast<size_t>(o)])] = true;

  MemoryPlan plan;
  std::unordered_map<NodeId, size_t> buffer_of;
  for (size_t s = 0; s < order.size(); ++s) {
    const Node& n = graph.node(order[s]);
    if (n.op_name() == "leaf" || is_output[static_cast<size_t>(n.id)]) continue;
    const size_t raw = static_cast<size_t>(numel(n.shape)) * dtype_size(n.dtype);
    const size_t bytes = std::max<size_t>(1, (raw + kArenaAlignment - 1) / kArenaAlignment) * kArenaAlignment;
    buffer_of[n.id] = plan.buffers.size();
    plan.buffers.push_back({n.id, bytes, 0, s, s});
    plan.total_bytes += bytes;
  }
  for (size_t s = 0; s < order.size(); ++s)
    for (NodeId in : graph.node(order[s]).inputs) {
      auto it = buffer_of.find(canonical[static_cast<size_t>(in)]);
      if (it != buffer_of.end()) plan.buffers[it->second].last = std::max(plan.buffers[it->second].last, s);
    }

  std::vector<size_t> by_size(plan.buffers.size());
  for (size_t i = 0; i < by_size.size(); ++i) by_size[i] = i;
  std::stable_sort(by_size.begin(), by_size.end(),
                   [&](size_t a, size_t b) { return plan.buffers[a].bytes > plan.buffers[b].bytes; });
  std::vector<size_t> placed;
  std::vector<const Buffer*> conflicts;
  for (size_t idx : by_size) {
    Buffer& b = plan.buffers[idx];
    conflicts.clear();
    for (size_t p : placed)
      if (lifetimes_overlap(b, plan.buffers[p])) conflicts.push_back(&plan.buffers[p]);
    std::sort(conflicts.begin(), conflicts.end(), [](const Buffer* x, const Buffer* y) { return x->offset < y->offset; });
    size_t offset = 0;
    for (const Buffer* c : conflicts) {
      if (c->offset >= offset + b.bytes) break;
      offset = std::max(offset, c->offset + c->bytes);
    }
    b.offset = offset;
    plan.arena_bytes = std::max(plan.arena_bytes, offset + b.bytes);
    placed.push_back(idx);
  }
  return plan;
}

void verify_memory_plan(const MemoryPlan& plan) {
  for (size_t i = 0; i < plan.buffers.size(); ++i) {
    const Buffer& a = plan.buffers[i];
    AGILENN_CHECK(a.offset + a.bytes <= plan.arena_bytes, "memory plan: buffer of node " << a.node
                                                                                         << " leaves the arena");
    AGILENN_CHECK(a.offset % kArenaAlignment == 0, "memory plan: buffer of node " << a.node << " is misaligned");
    for (size_t j = i + 1; j < plan.buffers.size(); ++j) {
      const Buffer& b = plan.buffers[j];
      AGILENN_CHECK(!(lifetimes_overlap(a, b) && bytes_overlap(a, b)),
                    "memory plan: live buffers of nodes " << a.node << " and " << b.node << " overlap");
    }
  }
}

}  // namespace agilenn
