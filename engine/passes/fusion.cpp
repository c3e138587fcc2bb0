// Elementwise fusion: a chain of elementwise ops whose intermediate values each have one
// reader becomes one fused_elementwise node, which reads the chain's inputs once and
// writes its result once (one loop on the CPU, one kernel on CUDA), and whose
// intermediates never take arena memory; a chain read only by a sum over leading axes
// becomes, with the sum, one fused_sum node, which stores no element of the chain.
#include <algorithm>
#include <unordered_map>

#include "engine/ir/fused_program.h"
#include "engine/ir/registry.h"
#include "engine/ir/shape_util.h"
#include "engine/passes/passes.h"

namespace agilenn {
namespace {

constexpr size_t kNone = SIZE_MAX;

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
  // A fused node reads its inputs where its result is made: absorbing a value made long
  // before must not keep its large inputs alive longer than they were (the value itself,
  // one buffer, would otherwise become several).
  const auto keeps_nothing_longer = [&](const std::vector<NodeId>& inputs, NodeId value, size_t at) {
    for (NodeId e : inputs) {
      const Node& x = graph.node(e);
      const bool in_arena = x.op_name() != "leaf" && !is_output[static_cast<size_t>(e)];
      if (in_arena && last_read[static_cast<size_t>(e)] < at && 8 * arena_bytes(x) > arena_bytes(graph.node(value))) return false;
    }
    return true;
  };

  // members[s]: the steps of the group whose result step s computes (empty once absorbed).
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
  for (size_t s = 0; s < n; ++s) {
    const Node& node = graph.node(plan.order[s]);
    if (!fusable(node)) continue;
    members[s] = {s};
    for (NodeId in : plan.reads[s]) {
      const size_t q = pos[static_cast<size_t>(in)];
      // Only a value read once, here, at the same shape: it then lives nowhere else.
      if (q == kNone || members[q].empty() || readers[static_cast<size_t>(in)] != 1 ||
          is_output[static_cast<size_t>(in)] || graph.node(in).shape != node.shape)
        continue;
      if (!keeps_nothing_longer(inputs_of(members[q]), in, s)) continue;
      std::vector<size_t> merged = members[q];
      merged.insert(merged.end(), members[s].begin(), members[s].end());
      std::sort(merged.begin(), merged.end());
      if (merged.size() > static_cast<size_t>(kernels::kFusedMaxInstructions) ||
          inputs_of(merged).size() > static_cast<size_t>(kernels::kFusedMaxInputs))
        continue;
      members[s] = std::move(merged);
      members[q].clear();
    }
  }

  // A sum over leading axes (a column sum, e.g. a batch norm's statistics or a broadcast
  // operand's gradient) takes in the group that makes its input, read there only: the
  // group's values are added up as they are made, never stored.
  std::vector<size_t> summed_at(n, kNone);  // group step -> the step of the sum taking it in
  for (size_t s = 0; s < n; ++s) {
    const Node& node = graph.node(plan.order[s]);
    // A plan output keeps its node: callers find it by its id (gradient buckets do).
    if (node.op_name() != "sum" || is_output[static_cast<size_t>(plan.order[s])]) continue;
    const NodeId in = plan.reads[s][0];
    const size_t q = pos[static_cast<size_t>(in)];
    if (q == kNone || members[q].empty() || readers[static_cast<size_t>(in)] != 1 || is_output[static_cast<size_t>(in)])
      continue;
    const size_t rank = graph.node(in).shape.size();
    if (!leading_axes(normalize_axes(node.attrs.ints("axes"), rank), rank) ||
        !keeps_nothing_longer(inputs_of(members[q]), in, s))
      continue;
    summed_at[q] = s;
  }

  std::vector<bool> dropped(n, false);
  std::unordered_map<NodeId, NodeId> renamed;  // a replaced node -> its fused node
  // Replaces step `at` with an `op` node running the program of `group` (whose other steps
  // are dropped), with the attributes attrs_of(program, the group's shape).
  const auto replace = [&](size_t at, const std::vector<size_t>& group, const std::string& op, auto attrs_of) {
    const std::vector<NodeId> inputs = inputs_of(group);
    std::vector<NodeId> registers = inputs;
    std::vector<FusedStep> steps;
    for (size_t m : group) {
      const Node& member = graph.node(plan.order[m]);
      FusedStep step{member.op_name()};
      const auto reg = [&](NodeId v) {
        return static_cast<int32_t>(std::find(registers.begin(), registers.end(), v) - registers.begin());
      };
      step.a = reg(plan.reads[m][0]);
      if (plan.reads[m].size() > 1) step.b = reg(plan.reads[m][1]);
      if (member.attrs.has("lo")) step.lo = member.attrs.f("lo"), step.hi = member.attrs.f("hi");
      steps.push_back(step);
      registers.push_back(plan.order[m]);
      if (m != at) dropped[m] = true;
    }
    Attrs attrs = attrs_of(steps, graph.node(plan.order[group.back()]).shape);
    const NodeId replaced = plan.order[at];
    const NodeId node = graph.add(op, inputs, std::move(attrs));
    plan.order[at] = node;
    plan.reads[at] = inputs;
    renamed[replaced] = node;
  };
  size_t fused = 0;
  for (size_t s = 0; s < n; ++s) {
    if (summed_at[s] != kNone) {
      const Attrs& sum = graph.node(plan.order[summed_at[s]]).attrs;
      const std::vector<int64_t> axes = sum.ints("axes");
      const bool keepdims = sum.i("keepdims") != 0;
      replace(summed_at[s], members[s], "fused_sum", [&](const std::vector<FusedStep>& steps, const Shape& shape) {
        return fused_sum_attrs(steps, shape, axes, keepdims);
      });
      ++fused;
    } else if (members[s].size() >= 2 && !is_output[static_cast<size_t>(plan.order[s])]) {
      replace(s, members[s], "fused_elementwise", fused_attrs);
      ++fused;
    }
  }
  for (auto& r : plan.reads)
    for (NodeId& in : r)
      if (auto it = renamed.find(in); it != renamed.end()) in = it->second;
  size_t kept = 0;
  for (size_t s = 0; s < n; ++s) {
    if (dropped[s]) continue;
    if (kept != s) {
      plan.order[kept] = plan.order[s];
      plan.reads[kept] = std::move(plan.reads[s]);
    }
    ++kept;
  }
  plan.order.resize(kept);
  plan.reads.resize(kept);
  for (size_t id = plan.canonical.size(); id < graph.size(); ++id) plan.canonical.push_back(static_cast<NodeId>(id));
  return fused;
}

}  // namespace agilenn
