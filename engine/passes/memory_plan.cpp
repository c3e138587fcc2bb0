#include <algorithm>
#include <unordered_map>

#include "engine/core/error.h"
#include "engine/ir/registry.h"
#include "engine/passes/passes.h"

namespace agilenn {
namespace {

// Buffers, or the groups of buffers that share memory: [first, last] steps.
template <class Span>
bool lifetimes_overlap(const Span& a, const Span& b) {
  return a.first <= b.last && b.first <= a.last;
}
bool bytes_overlap(const Buffer& a, const Buffer& b) {
  return a.offset < b.offset + b.bytes && b.offset < a.offset + a.bytes;
}

}  // namespace

size_t arena_bytes(const Node& n) {
  const size_t raw = static_cast<size_t>(numel(n.shape)) * dtype_size(n.dtype);
  return std::max<size_t>(1, (raw + kArenaAlignment - 1) / kArenaAlignment) * kArenaAlignment;
}

MemoryPlan plan_memory(const Graph& graph, const std::vector<NodeId>& order,
                       const std::vector<std::vector<NodeId>>& reads, const std::vector<NodeId>& outputs,
                       bool in_place) {
  AGILENN_CHECK(reads.size() == order.size(), "plan_memory: " << reads.size() << " read lists for " << order.size()
                                                              << " steps");
  std::vector<bool> is_output(graph.size(), false);
  for (NodeId o : outputs) is_output[static_cast<size_t>(o)] = true;

  MemoryPlan plan;
  std::unordered_map<NodeId, size_t> buffer_of;
  for (size_t s = 0; s < order.size(); ++s) {
    const Node& n = graph.node(order[s]);
    if (n.op_name() == "leaf" || is_output[static_cast<size_t>(n.id)]) continue;
    const size_t bytes = arena_bytes(n);
    buffer_of[n.id] = plan.buffers.size();
    plan.buffers.push_back({n.id, bytes, 0, s, s});
    plan.total_bytes += bytes;
  }
  for (size_t s = 0; s < order.size(); ++s)
    for (NodeId in : reads[s]) {
      auto it = buffer_of.find(in);
      if (it != buffer_of.end()) plan.buffers[it->second].last = std::max(plan.buffers[it->second].last, s);
    }

  // Groups of buffers that share memory: each buffer its own, unless its op writes over an
  // input of its shape and dtype whose last reader it is (then it joins that input's group,
  // which ends there, so no other member is live after it).
  std::vector<size_t> group(plan.buffers.size());
  for (size_t b = 0; b < group.size(); ++b) group[b] = b;
  if (in_place) {
    for (Buffer& out : plan.buffers) {
      const Node& n = graph.node(out.node);
      if (!n.op->elementwise) continue;
      for (NodeId in_id : reads[out.first]) {
        auto it = buffer_of.find(in_id);
        if (it == buffer_of.end()) continue;
        const Buffer& in = plan.buffers[it->second];
        const Node& x = graph.node(in.node);
        if (in.last != out.first || x.shape != n.shape || x.dtype != n.dtype) continue;
        out.reuses = in.node;
        group[static_cast<size_t>(&out - plan.buffers.data())] = group[it->second];
        ++plan.in_place;
        break;
      }
    }
  }
  struct Group {
    size_t bytes = 0, first = SIZE_MAX, last = 0, offset = 0;
  };
  std::vector<Group> groups(plan.buffers.size());
  for (size_t b = 0; b < plan.buffers.size(); ++b) {
    Group& g = groups[group[b]];
    g.bytes = std::max(g.bytes, plan.buffers[b].bytes);
    g.first = std::min(g.first, plan.buffers[b].first);
    g.last = std::max(g.last, plan.buffers[b].last);
  }

  std::vector<int64_t> change(order.size() + 1, 0);
  for (size_t g = 0; g < groups.size(); ++g)
    if (group[g] == g) {
      change[groups[g].first] += static_cast<int64_t>(groups[g].bytes);
      change[groups[g].last + 1] -= static_cast<int64_t>(groups[g].bytes);
    }
  int64_t live = 0;
  for (size_t s = 0; s < change.size(); ++s)
    if (static_cast<size_t>(live += change[s]) > plan.live_peak_bytes) {
      plan.live_peak_bytes = static_cast<size_t>(live);
      plan.live_peak_step = s;
    }

  std::vector<size_t> by_size;
  for (size_t g = 0; g < groups.size(); ++g)
    if (group[g] == g) by_size.push_back(g);
  std::stable_sort(by_size.begin(), by_size.end(), [&](size_t a, size_t b) { return groups[a].bytes > groups[b].bytes; });
  std::vector<size_t> placed;
  std::vector<const Group*> conflicts;
  for (size_t idx : by_size) {
    Group& g = groups[idx];
    conflicts.clear();
    for (size_t p : placed)
      if (lifetimes_overlap(g, groups[p])) conflicts.push_back(&groups[p]);
    std::sort(conflicts.begin(), conflicts.end(), [](const Group* x, const Group* y) { return x->offset < y->offset; });
    size_t offset = 0;
    for (const Group* c : conflicts) {
      if (c->offset >= offset + g.bytes) break;
      offset = std::max(offset, c->offset + c->bytes);
    }
    g.offset = offset;
    plan.arena_bytes = std::max(plan.arena_bytes, offset + g.bytes);
    placed.push_back(idx);
  }
  for (size_t b = 0; b < plan.buffers.size(); ++b) plan.buffers[b].offset = groups[group[b]].offset;
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
      // An in-place output and the input it writes over meet at the step that does it.
      const bool hand_over = (b.reuses == a.node && a.last == b.first) || (a.reuses == b.node && b.last == a.first);
      if (hand_over) {
        AGILENN_CHECK(a.offset == b.offset && a.bytes == b.bytes,
                      "memory plan: node " << (b.reuses == a.node ? b.node : a.node) << " is in place of node "
                                           << (b.reuses == a.node ? a.node : b.node) << " but not at its bytes");
        continue;
      }
      AGILENN_CHECK(!(lifetimes_overlap(a, b) && bytes_overlap(a, b)),
                    "memory plan: live buffers of nodes " << a.node << " and " << b.node << " overlap");
    }
  }
}

}  // namespace agilenn
