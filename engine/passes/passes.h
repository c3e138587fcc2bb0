// Graph passes: common-subexpression elimination, dead-code elimination,
// rematerialisation and the memory plan, combined by `compile` into a Plan that the
// executor runs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "engine/ir/graph.h"

namespace agilenn {

// For every node, the first node computing the same op on the same (canonical) inputs
// with the same attributes, shape and dtype. Named leaves are never merged.
std::vector<NodeId> common_subexpressions(const Graph& graph);

// The canonical nodes needed for `outputs`, in topological (id) order.
std::vector<NodeId> live_nodes(const Graph& graph, const std::vector<NodeId>& outputs,
                               const std::vector<NodeId>& canonical);

struct Buffer {
  NodeId node;
  size_t bytes;   // rounded up to the arena alignment
  size_t offset;  // in the arena
  size_t first;   // step that writes it
  size_t last;    // last step that reads it
  // In-place: the input (dying at `first`) whose memory this node's output takes, or kNoNode.
  NodeId reuses = kNoNode;
};

struct MemoryPlan {
  std::vector<Buffer> buffers;  // every intermediate placed in the arena
  size_t arena_bytes = 0;       // peak: the arena's size
  size_t total_bytes = 0;       // the sum of all intermediates, had each its own buffer
  size_t in_place = 0;          // intermediates written over an input
  // The most bytes live at one step: no placement of these lifetimes needs less than this
  // (arena_bytes above it is the placement's fragmentation).
  size_t live_peak_bytes = 0;
  size_t live_peak_step = 0;  // the first step of the order where it is reached
};

constexpr size_t kArenaAlignment = 64;

// The bytes a node's value takes in the arena: its size rounded up to the alignment.
size_t arena_bytes(const Node& n);

// Places every computed intermediate of `order` that is not an output in one arena by
// liveness (`reads[s]`: the values step s reads; `outputs`: canonical ids): buffers whose
// lifetimes overlap never share bytes, except that with `in_place` the output of an
// OpDef::elementwise op takes the memory of an input of its shape and dtype that dies there
// (a chain of such ops runs in one buffer). Greedy by size, lowest fit.
MemoryPlan plan_memory(const Graph& graph, const std::vector<NodeId>& order,
                       const std::vector<std::vector<NodeId>>& reads, const std::vector<NodeId>& outputs,
                       bool in_place = true);

// Throws if two buffers with overlapping lifetimes share bytes, or one leaves the arena.
void verify_memory_plan(const MemoryPlan& plan);

struct Plan {
  std::vector<NodeId> order;                // nodes to run, leaves included
  std::vector<std::vector<NodeId>> reads;   // per step of `order`: the values its inputs are read from
  std::vector<NodeId> outputs;              // canonical ids of the requested outputs
  std::vector<NodeId> canonical;            // graph node -> its CSE representative
  MemoryPlan memory;
  // Rematerialisation (CompileOptions::memory_budget): the nodes it added to recompute
  // values, and the arena's live peak before it.
  size_t recomputed = 0;
  size_t live_peak_without_remat = 0;
  size_t fused = 0;  // fused_elementwise and fused_sum nodes (CompileOptions::fuse)
};

struct CompileOptions {
  // Rematerialisation: while the live peak of the arena is above this many bytes, a value
  // that waits across the peak for a later reader and comes from a cheap elementwise op
  // (OpDef::elementwise, not transcendental) is recomputed just before that reader from
  // what is live there, if that lowers the peak. 0 lowers it as far as that goes; unset:
  // no rematerialisation.
  std::optional<size_t> memory_budget;
  // Elementwise fusion (after rematerialisation): chains whose intermediates have one
  // reader (or are cheap enough to recompute in each) run as one fused_elementwise node,
  // or with the column sum reading them as one fused_sum node.
  bool fuse = false;
};

// The passes on a graph that stays as it is.
Plan compile(const Graph& graph, const std::vector<NodeId>& outputs);
// With rematerialisation, which appends the recomputing nodes to `graph` (other plans of
// the graph are unaffected: CSE merges the copies with their originals there).
Plan compile(Graph& graph, const std::vector<NodeId>& outputs, const CompileOptions& options);

// Replaces each chain of fusable elementwise steps (every intermediate read once, by the
// chain, at the chain's shape, and not a plan output; or copied into each of its readers,
// see fusion.cpp) with one fused_elementwise node appended to `graph`, or, where the
// chain's result is read by a sum over leading axes, the chain and the sum with one
// fused_sum node. Outputs and `canonical` name the fused nodes that replace them. Returns
// the number of fused nodes.
size_t fuse_elementwise(Graph& graph, Plan& plan);

// Rewrites plan.order and plan.reads to recompute values under `budget` bytes of live
// peak (see CompileOptions); returns the number of nodes added to `graph`.
size_t rematerialise(Graph& graph, Plan& plan, size_t budget);

}  // namespace agilenn
