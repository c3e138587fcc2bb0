// Elementwise fusion: a chain of elementwise ops whose intermediate values each have one
// reader becomes one fused_elementwise node, which reads the chain's inputs once and
// writes its result once (one loop on the CPU, one kernel on CUDA), and whose
// intermediates never take arena memory; a chain read only by a sum over leading axes
// becomes, with the sum, one fused_sum node, which stores no element of the chain; such
// sums over the same rows that share an input become one node with several outputs. A
// cheap value with several readers that each fuse, made from one value of its size
// (x - mean), is recomputed inside each reader instead of stored.
#include <algorithm>
#include <unordered_map>

#include "engine/ir/fused_program.h"
#include "engine/ir/ops.h"
#include "engine/ir/registry.h"
#include "engine/ir/shape_util.h"
#include "engine/passes/passes.h"

namespace agilenn {
namespace {

constexpr size_t kNone = SIZE_MAX;

// Whether x counts as a full-size operand of a value of value_bytes, rather than a small
// one such as a per-channel vector: over an eighth of its size.
bool full_size(const Node& x, size_t value_bytes) { return 8 * arena_bytes(x) > value_bytes; }

bool fusable(const Node& n) {
  return n.op_name() != "leaf" && fused_op_of(n.op_name()) && (n.dtype == DType::f32 || n.dtype == DType::f64);
}

}  // namespace

size_t fuse_elementwise(Graph& graph, Plan& plan) {
  const size_t n = plan.order.size();
  std::vector<int> readers(graph.size(), 0);
  for (const auto& r : plan.reads)
    for (NodeId in : r) ++readers[static_cast<size_t>(in)];
  std::vector<bool> is_output(graph.size(), false);
  for (NodeId o : plan.outputs) is_output[static_cast<size_t>(o)] = true;
  std::vector<size_t> pos(graph.size(), kNone), last_read(graph.size(), 0);
  for (size_t s = 0; s < n; ++s) pos[static_cast<size_t>(plan.order[s])] = s;
  for (size_t s = 0; s < n; ++s)
    for (NodeId in : plan.reads[s]) last_read[static_cast<size_t>(in)] = s;
  // A fused node reads its inputs where its result is made: absorbing a value must not keep
  // more of its group's inputs alive longer than the value's own buffer, which goes (one
  // buffer would otherwise become several). Small inputs (a batch norm's per-channel scale
  // beside its gradient) are not counted: a full-size pass saved is worth a few small
  // buffers kept a little longer.
  const auto extends_no_more_than_it_frees = [&](const std::vector<NodeId>& inputs, NodeId value, size_t at) {
    const size_t value_bytes = arena_bytes(graph.node(value));
    size_t extended = 0;
    for (NodeId e : inputs) {
      const Node& x = graph.node(e);
      const bool in_arena = x.op_name() != "leaf" && !is_output[static_cast<size_t>(e)];
      if (in_arena && last_read[static_cast<size_t>(e)] < at && full_size(x, value_bytes))
        extended += arena_bytes(x);
    }
    return extended <= value_bytes;
  };
  // Bytes of the values made between steps `from` and `to`, exclusive (fused or not). When
  // these total no more than a value made at `from` and last read at `to`, keeping that
  // value's inputs alive until `to` in its place cannot raise the peak: at `from` the
  // inputs and the value were all alive, and since then no more than the value's bytes
  // were added (a batch norm backward's x gradient waits only for the small per-channel
  // steps that finish the mean's gradient). Values that readers will take in are counted
  // too, except broadcasts (of such small values) that only `to` reads: `to` takes them in.
  std::vector<size_t> made_before(n + 1, 0);
  for (size_t t = 0; t < n; ++t) {
    const Node& x = graph.node(plan.order[t]);
    made_before[t + 1] = made_before[t] + (x.op_name() == "leaf" ? 0 : arena_bytes(x));
  }
  const auto made_between = [&](size_t from, size_t to) {
    size_t made = made_before[to] - made_before[from + 1];
    for (NodeId in : plan.reads[to]) {
      const size_t t = pos[static_cast<size_t>(in)];
      const Node& x = graph.node(in);
      if (t != kNone && t > from && t < to && x.op_name() == "broadcast_to" && readers[static_cast<size_t>(in)] == 1)
        made -= arena_bytes(x);
    }
    return made;
  };
  // The inputs are now read at step `at` too.
  const auto read_until = [&](const std::vector<NodeId>& inputs, size_t at) {
    for (NodeId e : inputs) {
      size_t& last = last_read[static_cast<size_t>(e)];
      last = std::max(last, at);
    }
  };

  // members[s]: the steps of the group whose result step s computes (empty once moved into
  // a reader's group). A sum over leading axes holds, as members, the group it sums.
  std::vector<std::vector<size_t>> members(n);
  auto inputs_of = [&](const std::vector<size_t>& steps) {
    std::vector<NodeId> made, inputs;
    for (size_t m : steps) made.push_back(plan.order[m]);
    for (size_t m : steps)
      for (NodeId in : plan.reads[m])
        if (std::find(made.begin(), made.end(), in) == made.end() &&
            std::find(inputs.begin(), inputs.end(), in) == inputs.end())
          inputs.push_back(in);
    return inputs;
  };
  // What step s reads: its group's inputs, or its own where it has no group.
  const auto step_reads = [&](size_t s) { return members[s].empty() ? plan.reads[s] : inputs_of(members[s]); };
  // Two groups' steps as one group, in step order (a copy both took in once).
  const auto joined_steps = [](std::vector<size_t> a, const std::vector<size_t>& b) {
    a.insert(a.end(), b.begin(), b.end());
    std::sort(a.begin(), a.end());
    a.erase(std::unique(a.begin(), a.end()), a.end());
    return a;
  };
  const auto within_limits = [&](const std::vector<size_t>& group) {
    return group.size() <= static_cast<size_t>(kernels::kFusedMaxInstructions) &&
           inputs_of(group).size() <= static_cast<size_t>(kernels::kFusedMaxInputs);
  };
  const auto column_sum_of = [&](size_t s, NodeId value) {
    const Node& node = graph.node(plan.order[s]);
    const size_t rank = graph.node(value).shape.size();
    return node.op_name() == "sum" && plan.reads[s][0] == value &&
           leading_axes(normalize_axes(node.attrs.ints("axes"), rank), rank);
  };
  // The steps reading each value, once each.
  std::vector<std::vector<size_t>> reader_steps(graph.size());
  for (size_t s = 0; s < n; ++s)
    for (NodeId in : plan.reads[s])
      if (reader_steps[static_cast<size_t>(in)].empty() || reader_steps[static_cast<size_t>(in)].back() != s)
        reader_steps[static_cast<size_t>(in)].push_back(s);
  // A group with several readers is copied into each of them, rather than stored, when
  // that costs no memory traffic: every reader fuses (an elementwise step at its shape or a
  // column sum of it), and the group reads one value at its size (x - mean, say, but not
  // x · y), which each reader then reads in its place. The value's pass and buffer go; its
  // few cheap instructions (no exp or log) run once per reader. The copy keeps its input
  // alive where the value was, never longer than the two were.
  constexpr size_t kMaxCopiedInstructions = 4;
  std::vector<bool> copyable(n, false);
  const auto decide_copyable = [&](size_t q) {
    const NodeId v = plan.order[q];
    const Node& value = graph.node(v);
    if (is_output[static_cast<size_t>(v)] || readers[static_cast<size_t>(v)] < 2 ||
        members[q].size() > kMaxCopiedInstructions)
      return false;
    for (size_t m : members[q])
      if (graph.node(plan.order[m]).op->transcendental) return false;
    size_t full_size_inputs = 0;
    for (NodeId e : inputs_of(members[q])) full_size_inputs += full_size(graph.node(e), arena_bytes(value)) ? 1 : 0;
    if (full_size_inputs > 1) return false;
    for (size_t r : reader_steps[static_cast<size_t>(v)]) {
      const Node& reader = graph.node(plan.order[r]);
      if (!((fusable(reader) && reader.shape == value.shape) || column_sum_of(r, v))) return false;
    }
    return true;
  };
  // Step s takes in the group of step q, which makes one of its inputs: moved when s is the
  // value's only reader, copied when the group is copyable.
  const auto take = [&](size_t s, size_t q) {
    const NodeId in = plan.order[q];
    if (!fusable(graph.node(in)) || members[q].empty()) return;  // not an elementwise group
    if (std::find(members[s].begin(), members[s].end(), q) != members[s].end()) return;  // read twice
    const bool move = readers[static_cast<size_t>(in)] == 1 && !is_output[static_cast<size_t>(in)];
    if (!move && !copyable[q]) return;
    const std::vector<NodeId> inputs = inputs_of(members[q]);
    if (move && !extends_no_more_than_it_frees(inputs, in, s) && made_between(q, s) > arena_bytes(graph.node(in)))
      return;
    std::vector<size_t> merged = joined_steps(members[q], members[s]);
    if (!within_limits(merged)) return;
    read_until(inputs, s);
    members[s] = std::move(merged);
    if (move) members[q].clear();
  };
  std::vector<bool> sums(n, false);  // the column sums that took in a group
  for (size_t s = 0; s < n; ++s) {
    const Node& node = graph.node(plan.order[s]);
    if (fusable(node)) {
      members[s] = {s};
      for (NodeId in : plan.reads[s]) {
        const size_t q = pos[static_cast<size_t>(in)];
        // Only a value at the same shape: it is then made element for element.
        if (q != kNone && graph.node(in).shape == node.shape) take(s, q);
      }
      copyable[s] = decide_copyable(s);
      // Its readers will read its inputs in its place.
      if (copyable[s]) read_until(inputs_of(members[s]), last_read[static_cast<size_t>(plan.order[s])]);
      continue;
    }
    // A sum over leading axes (a column sum, e.g. a batch norm's statistics or a broadcast
    // operand's gradient) takes in the group that makes its input: the group's values are
    // added up as they are made, never stored.
    if (node.op_name() != "sum") continue;
    const NodeId in = plan.reads[s][0];
    const size_t q = pos[static_cast<size_t>(in)];
    if (q == kNone || !column_sum_of(s, in)) continue;
    take(s, q);
    sums[s] = !members[s].empty();
  }
  // A group moved into a reader's goes; a copyable one goes once no remaining step reads it
  // (a reader may have been unable to take it in within the fused program's limits).
  std::vector<bool> dropped(n, false), read(graph.size(), false);
  for (size_t s = n; s-- > 0;) {
    const NodeId v = plan.order[s];
    if (fusable(graph.node(v))) dropped[s] = members[s].empty() || (copyable[s] && !read[static_cast<size_t>(v)]);
    if (dropped[s]) continue;
    for (NodeId in : step_reads(s)) read[static_cast<size_t>(in)] = true;
  }

  // Column sums over the same rows that read a full-size input in common become one
  // fused_sum with several outputs at the first of them, which reads that input once (a
  // batch norm backward's sums of its gradient, for beta, and of the gradient times
  // x - mean, for the scale). A later sum joins only when every input it reads is made
  // before the first: it then runs earlier, never later.
  std::vector<std::vector<size_t>> joined(n);  // for a first sum: the later sums it computes
  {
    const auto column_sum = [&](size_t s) {
      return !dropped[s] && graph.node(plan.order[s]).op_name() == "sum" && column_sum_of(s, plan.reads[s][0]);
    };
    for (size_t s = 0; s < n; ++s) {
      if (!column_sum(s)) continue;
      const Node& first = graph.node(plan.order[s]);
      const Node& value = graph.node(plan.reads[s][0]);
      std::vector<size_t> group = members[s];
      std::vector<NodeId> reads = step_reads(s);
      for (size_t t = s + 1; t < n && joined[s].size() + 1 < static_cast<size_t>(kernels::kFusedMaxSums); ++t) {
        if (!column_sum(t)) continue;
        const Node& later = graph.node(plan.order[t]);
        if (graph.node(plan.reads[t][0]).shape != value.shape || later.attrs.str() != first.attrs.str()) continue;
        const std::vector<NodeId> later_reads = step_reads(t);
        bool ready = true, shared = false;
        for (NodeId in : later_reads) {
          const size_t made = pos[static_cast<size_t>(in)];
          ready = ready && (made == kNone || made < s);
          shared = shared || (full_size(graph.node(in), arena_bytes(value)) &&
                              std::find(reads.begin(), reads.end(), in) != reads.end());
        }
        if (!ready || !shared) continue;
        std::vector<size_t> merged = joined_steps(group, members[t]);
        std::vector<NodeId> merged_reads = reads;
        for (NodeId in : later_reads)
          if (std::find(merged_reads.begin(), merged_reads.end(), in) == merged_reads.end()) merged_reads.push_back(in);
        if (merged.empty() || merged.size() > static_cast<size_t>(kernels::kFusedMaxInstructions) ||
            merged_reads.size() > static_cast<size_t>(kernels::kFusedMaxInputs))
          continue;
        group = std::move(merged);
        reads = std::move(merged_reads);
        joined[s].push_back(t);
        dropped[t] = true;
      }
      if (!joined[s].empty()) members[s] = std::move(group);
    }
  }

  std::unordered_map<NodeId, NodeId> renamed;  // a replaced node -> its fused node
  // Replaces step `at` with an `op` node running the program of `group` over its inputs and
  // any of `summed` (values a fused_sum adds up) that the group does not make, with the
  // attributes attrs_of(program, the program's shape, the registers of `summed`).
  const auto replace = [&](size_t at, const std::vector<size_t>& group, const std::vector<NodeId>& summed,
                           const std::string& op, auto attrs_of) {
    std::vector<NodeId> inputs = inputs_of(group);
    for (NodeId v : summed) {
      const bool made = std::any_of(group.begin(), group.end(), [&](size_t m) { return plan.order[m] == v; });
      if (!made && std::find(inputs.begin(), inputs.end(), v) == inputs.end()) inputs.push_back(v);
    }
    std::vector<NodeId> registers = inputs;
    const auto reg = [&](NodeId v) {
      return static_cast<int32_t>(std::find(registers.begin(), registers.end(), v) - registers.begin());
    };
    std::vector<FusedStep> steps;
    for (size_t m : group) {
      const Node& member = graph.node(plan.order[m]);
      FusedStep step{member.op_name()};
      step.a = reg(plan.reads[m][0]);
      if (plan.reads[m].size() > 1) step.b = reg(plan.reads[m][1]);
      if (member.attrs.has("lo")) step.lo = member.attrs.f("lo"), step.hi = member.attrs.f("hi");
      steps.push_back(step);
      registers.push_back(plan.order[m]);
    }
    std::vector<int64_t> summed_registers;
    for (NodeId v : summed) summed_registers.push_back(reg(v));
    Attrs attrs = attrs_of(steps, graph.node(plan.order[group.back()]).shape, std::move(summed_registers));
    const NodeId replaced = plan.order[at];
    const NodeId node = graph.add(op, inputs, std::move(attrs));
    plan.order[at] = node;
    plan.reads[at] = inputs;
    renamed[replaced] = node;
  };
  // Steps that follow step s: the slices of a fused_sum with several outputs, each under
  // the name of the sum it computes.
  std::vector<std::vector<std::pair<NodeId, std::vector<NodeId>>>> after(n);
  size_t fused = 0;
  for (size_t s = 0; s < n; ++s) {
    if (dropped[s]) continue;
    if (!joined[s].empty()) {
      std::vector<NodeId> originals{plan.order[s]}, summed{plan.reads[s][0]};
      for (size_t t : joined[s]) originals.push_back(plan.order[t]), summed.push_back(plan.reads[t][0]);
      const Attrs sum = graph.node(plan.order[s]).attrs;
      replace(s, members[s], summed, "fused_sum",
              [&](const std::vector<FusedStep>& steps, const Shape& shape, std::vector<int64_t> registers) {
                return fused_sum_attrs(steps, shape, sum.ints("axes"), sum.i("keepdims") != 0, std::move(registers));
              });
      const Value stacked(&graph, plan.order[s]);
      for (size_t k = 0; k < originals.size(); ++k) {
        const Value slice = ops::slice_axis(stacked, 0, static_cast<int64_t>(k), static_cast<int64_t>(k) + 1);
        const Value one = ops::reshape(slice, graph.node(originals[k]).shape);
        after[s].push_back({slice.id(), {stacked.id()}});
        after[s].push_back({one.id(), {slice.id()}});
        renamed[originals[k]] = one.id();
      }
      ++fused;
    } else if (sums[s]) {
      const Attrs& sum = graph.node(plan.order[s]).attrs;
      const std::vector<int64_t> axes = sum.ints("axes");
      const bool keepdims = sum.i("keepdims") != 0;
      replace(s, members[s], {}, "fused_sum", [&](const std::vector<FusedStep>& steps, const Shape& shape, auto) {
        return fused_sum_attrs(steps, shape, axes, keepdims);
      });
      ++fused;
    } else if (members[s].size() >= 2) {
      replace(s, members[s], {}, "fused_elementwise",
              [](const std::vector<FusedStep>& steps, const Shape& shape, auto) { return fused_attrs(steps, shape); });
      ++fused;
    }
  }
  // Later steps, the outputs and the CSE map (through which gradient buckets find their
  // nodes) name the fused nodes.
  const auto rename = [&](NodeId& id) {
    if (auto it = renamed.find(id); it != renamed.end()) id = it->second;
  };
  for (auto& r : plan.reads)
    for (NodeId& in : r) rename(in);
  for (NodeId& o : plan.outputs) rename(o);
  for (NodeId& c : plan.canonical) rename(c);
  std::vector<NodeId> order;
  std::vector<std::vector<NodeId>> reads;
  for (size_t s = 0; s < n; ++s) {
    if (dropped[s]) continue;
    order.push_back(plan.order[s]);
    reads.push_back(std::move(plan.reads[s]));
    for (auto& [node, node_reads] : after[s]) {
      order.push_back(node);
      reads.push_back(std::move(node_reads));
    }
  }
  plan.order = std::move(order);
  plan.reads = std::move(reads);
  for (size_t id = plan.canonical.size(); id < graph.size(); ++id) plan.canonical.push_back(static_cast<NodeId>(id));
  return fused;
}

}  // namespace agilenn
