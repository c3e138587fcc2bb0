#include "engine/runtime/executor.h"

#include <limits>

#include "engine/core/error.h"
#include "engine/ir/registry.h"

namespace agilenn {

namespace {
constexpr size_t kNotInArena = std::numeric_limits<size_t>::max();
}

Executor::Executor(const Graph& graph, Plan plan, Backend& backend)
    : graph_(graph), plan_(std::move(plan)), backend_(backend), arena_offset_(graph.size(), kNotInArena) {
  for (NodeId id : plan_.order) {
    const Node& n = graph_.node(id);
    AGILENN_CHECK(n.op_name() == "leaf" || backend_.supports(n.op_name()),
                  "backend '" << backend_.name() << "' has no kernel for op '" << n.op_name() << "'");
  }
  for (const Buffer& b : plan_.memory.buffers) arena_offset_[static_cast<size_t>(b.node)] = b.offset;
  arena_ = backend_.allocate(plan_.memory.arena_bytes);
}

std::vector<Tensor> Executor::run(const Feeds& feeds) {
  std::vector<Tensor> values(graph_.size());
  std::vector<bool> is_output(graph_.size(), false);
  for (NodeId o : plan_.outputs) is_output[static_cast<size_t>(o)] = true;
  std::vector<Tensor> inputs;
  for (NodeId id : plan_.order) {
    const Node& n = graph_.node(id);
    Tensor& slot = values[static_cast<size_t>(id)];
    if (n.op_name() == "leaf") {
      const std::string& name = n.attrs.s("name");
      auto it = feeds.find(name);
      AGILENN_CHECK(it != feeds.end(), "no value fed for '" << name << "'");
      const Tensor& t = it->second;
      AGILENN_CHECK(t.shape() == n.shape && t.dtype() == n.dtype,
                    "value fed for '" << name << "' is " << shape_str(t.shape()) << " " << dtype_name(t.dtype())
                                      << ", expected " << shape_str(n.shape) << " " << dtype_name(n.dtype));
      slot = t.device() == backend_.device() ? t : backend_.to_device(t);
      continue;
    }
    const size_t offset = arena_offset_[static_cast<size_t>(id)];
    if (offset != kNotInArena) {
      slot = Tensor(n.shape, n.dtype, arena_, offset);
    } else {
      AGILENN_CHECK(is_output[static_cast<size_t>(id)], "node " << id << " has no memory in the plan");
      slot = Tensor(n.shape, n.dtype, backend_.allocate(static_cast<size_t>(numel(n.shape)) * dtype_size(n.dtype)));
    }
    inputs.clear();
    for (NodeId in : n.inputs) inputs.push_back(values[static_cast<size_t>(plan_.canonical[static_cast<size_t>(in)])]);
    backend_.run(n, inputs, slot);
  }
  std::vector<Tensor> out;
  out.reserve(plan_.outputs.size());
  for (NodeId o : plan_.outputs) out.push_back(values[static_cast<size_t>(o)]);
  return out;
}

std::vector<Tensor> evaluate(const Graph& graph, const std::vector<NodeId>& outputs, const Feeds& feeds,
                             Backend& backend) {
  Executor ex(graph, compile(graph, outputs), backend);
  return ex.run(feeds);
}

}  // namespace agilenn
