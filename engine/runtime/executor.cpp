#include "engine/runtime/executor.h"

#include <algorithm>
#include <chrono>
#include <limits>
#include <utility>

#include "engine/core/error.h"
#include "engine/ir/fused_program.h"
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

Tensor Executor::fed_value(NodeId leaf, const Feeds& feeds) const {
  const Node& n = graph_.node(leaf);
  const std::string& name = n.attrs.s("name");
  auto it = feeds.find(name);
  AGILENN_CHECK(it != feeds.end(), "no value fed for '" << name << "'");
  const Tensor& t = it->second;
  AGILENN_CHECK(t.shape() == n.shape && t.dtype() == n.dtype,
                "value fed for '" << name << "' is " << shape_str(t.shape()) << " " << dtype_name(t.dtype())
                                  << ", expected " << shape_str(n.shape) << " " << dtype_name(n.dtype));
  return t;
}

void Executor::bind_computed(std::vector<Tensor>& values) const {
  std::vector<bool> is_output(graph_.size(), false);
  for (NodeId o : plan_.outputs) is_output[static_cast<size_t>(o)] = true;
  for (NodeId id : plan_.order) {
    const Node& n = graph_.node(id);
    if (n.op_name() == "leaf") continue;
    const size_t offset = arena_offset_[static_cast<size_t>(id)];
    if (offset != kNotInArena) {
      values[static_cast<size_t>(id)] = Tensor(n.shape, n.dtype, arena_, offset);
    } else {
      AGILENN_CHECK(is_output[static_cast<size_t>(id)], "node " << id << " has no memory in the plan");
      values[static_cast<size_t>(id)] =
          Tensor(n.shape, n.dtype, backend_.allocate(static_cast<size_t>(numel(n.shape)) * dtype_size(n.dtype)));
    }
  }
}

void Executor::launch_all(std::vector<Tensor>& values) {
  std::vector<Tensor> inputs;
  for (size_t step = 0; step < plan_.order.size(); ++step) {
    const NodeId id = plan_.order[step];
    const Node& n = graph_.node(id);
    if (n.op_name() == "leaf") {
      if (after_node_) after_node_(id, values[static_cast<size_t>(id)]);
      continue;
    }
    inputs.clear();
    for (NodeId in : plan_.reads[step]) inputs.push_back(values[static_cast<size_t>(in)]);
    const auto start = std::chrono::steady_clock::now();
    try {
      backend_.run(n, inputs, values[static_cast<size_t>(id)]);
      if (profiling_ != Profiling::off) backend_.synchronize();
    } catch (const Error& e) {
      AGILENN_THROW("while running " << graph_.describe(id) << ": " << e.what());
    }
    if (after_node_) after_node_(id, values[static_cast<size_t>(id)]);
    if (profiling_ == Profiling::off) continue;
    const auto end = std::chrono::steady_clock::now();
    std::string key = n.op_name();
    if (profiling_ == Profiling::by_op_and_shapes) {
      for (const Tensor& in : inputs) key += " " + shape_str(in.shape());
      if (n.attrs.has("program")) {  // a fused loop: what it computes
        const char* sep = " {";
        for (const FusedStep& s : fused_steps(n.attrs)) key += std::exchange(sep, ",") + s.op;
        key += "}";
      }
    }
    auto& [seconds, calls] = op_times_[key];
    seconds += std::chrono::duration<double>(end - start).count();
    ++calls;
  }
}

// Each output owns its storage: a fed leaf, or a node requested twice (or merged by CSE
// with another output), is copied so that updating one result cannot change another;
// under graph replay (`fixed`) every output is copied, as the next replay overwrites its
// buffer, unless the caller asked for views.
std::vector<Tensor> Executor::hand_out(const std::vector<Tensor>& values, bool fixed) const {
  std::vector<Tensor> out;
  out.reserve(plan_.outputs.size());
  std::vector<bool> handed_out(graph_.size(), false);
  for (NodeId o : plan_.outputs) {
    const Tensor& v = values[static_cast<size_t>(o)];
    const bool view = fixed && output_views_;
    const bool shared = (fixed && !view) || handed_out[static_cast<size_t>(o)] || graph_.node(o).op_name() == "leaf";
    handed_out[static_cast<size_t>(o)] = true;
    out.push_back(shared ? backend_.copy(v) : v);
  }
  return out;
}

void Executor::set_graph_replay(bool on) {
  graph_replay_ = on;
  fixed_values_.clear();
  leaf_buffers_.clear();
  fixed_runs_ = 0;
  recordings_.clear();
  replayed_ = false;
}

// Binds each leaf for a replayed run: a feed in the backend's memory in place, a host feed
// copied into the leaf's fixed buffer. Returns the in-place addresses (nullptr: copied).
std::vector<const void*> Executor::bind_leaves(const Feeds& feeds) {
  std::vector<const void*> in_place;
  for (NodeId id : plan_.order) {
    const Node& n = graph_.node(id);
    if (n.op_name() != "leaf") continue;
    const Tensor t = fed_value(id, feeds);
    Tensor& bound = fixed_values_[static_cast<size_t>(id)];
    if (t.device() == backend_.device()) {
      bound = t;
      in_place.push_back(t.raw());
      continue;
    }
    Tensor& own = leaf_buffers_[static_cast<size_t>(id)];
    if (!own.defined())
      own = Tensor(n.shape, n.dtype, backend_.allocate(static_cast<size_t>(numel(n.shape)) * dtype_size(n.dtype)));
    backend_.copy_into(t, own);
    bound = own;
    in_place.push_back(nullptr);
  }
  return in_place;
}

std::vector<Tensor> Executor::run(const Feeds& feeds) {
  if (graph_replay_ && profiling_ == Profiling::off) {
    if (fixed_values_.empty()) {
      fixed_values_.resize(graph_.size());
      leaf_buffers_.resize(graph_.size());
      bind_computed(fixed_values_);
    }
    std::vector<const void*> in_place = bind_leaves(feeds);
    if (fixed_runs_++ == 0) {
      launch_all(fixed_values_);
      return hand_out(fixed_values_, true);
    }
    auto it = std::find_if(recordings_.begin(), recordings_.end(),
                           [&](const Recording& r) { return r.in_place == in_place; });
    if (it == recordings_.end()) {
      // The recording reads the values bound now, whatever is bound later.
      std::unique_ptr<RecordedWork> work =
          backend_.record([this, values = fixed_values_]() mutable { launch_all(values); });
      if (!work) {  // this backend cannot record
        launch_all(fixed_values_);
        return hand_out(fixed_values_, true);
      }
      constexpr size_t kMaxRecordings = 4;
      if (recordings_.size() == kMaxRecordings) recordings_.erase(recordings_.begin());
      recordings_.push_back({std::move(in_place), std::move(work)});
      it = recordings_.end() - 1;
    } else {
      std::rotate(it, it + 1, recordings_.end());  // most recently used last
      it = recordings_.end() - 1;
    }
    it->work->replay();
    replayed_ = true;
    return hand_out(fixed_values_, true);
  }
  std::vector<Tensor> values(graph_.size());
  for (NodeId id : plan_.order) {
    if (graph_.node(id).op_name() != "leaf") continue;
    const Tensor t = fed_value(id, feeds);
    values[static_cast<size_t>(id)] = t.device() == backend_.device() ? t : backend_.to_device(t);
  }
  bind_computed(values);
  launch_all(values);
  return hand_out(values, false);
}

void Executor::check_faults() {
  const std::optional<IndexFault> f = backend_.take_fault();
  if (!f) return;
  const auto id = static_cast<size_t>(f->node_id);
  // Another executor's kernels may have met it: describe only nodes of this graph.
  if (f->node_id >= 0 && id < graph_.size() && &graph_.node(f->node_id) == f->node) {
    AGILENN_THROW("while running " << graph_.describe(f->node_id) << ": "
                                   << index_fault_message(f->node->op_name(), f->value, f->position, f->bound));
  }
  AGILENN_THROW("a kernel of another graph (node " << f->node_id << ") met an index at position " << f->position
                                                   << " with value " << f->value << ", outside [0, " << f->bound
                                                   << ")");
}

std::vector<Executor::OpTime> Executor::profile() const {
  std::vector<OpTime> out;
  for (const auto& [op, t] : op_times_) out.push_back({op, t.first, t.second});
  std::sort(out.begin(), out.end(), [](const OpTime& a, const OpTime& b) { return a.seconds > b.seconds; });
  return out;
}

std::vector<Tensor> evaluate(const Graph& graph, const std::vector<NodeId>& outputs, const Feeds& feeds,
                             Backend& backend) {
  Executor ex(graph, compile(graph, outputs), backend);
  std::vector<Tensor> out = ex.run(feeds);
  ex.check_faults();
  return out;
}

}  // namespace agilenn
