// Runs a compiled Plan on one backend: intermediates live in one arena laid out by the
// memory plan; leaves are fed by name; outputs get storage of their own. One Executor
// runs one step at a time (the arena is shared by its runs): use one per thread.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "engine/passes/passes.h"
#include "engine/runtime/backend.h"

namespace agilenn {

using Feeds = std::map<std::string, Tensor>;

class Executor {
 public:
  // Checks that the backend has a kernel for every op of the plan.
  Executor(const Graph& graph, Plan plan, Backend& backend);

  // Feeds must give every leaf the plan reads, with its declared shape and dtype.
  std::vector<Tensor> run(const Feeds& feeds);

  // Graph replay (backends that can record, i.e. CUDA): every computed value lives at a
  // fixed address; a feed already in the backend's memory (parameters, optimizer-updated
  // state, a table uploaded once) is read in place, and a host feed is copied into a fixed
  // buffer. The first run launches kernels one by one (library algorithm choices and
  // workspaces settle); later runs replay a recording of the whole kernel sequence, one per
  // set of addresses the in-place feeds have had (double-buffered inputs give two), the
  // last few kept. Ignored while profiling and on backends that cannot record.
  void set_graph_replay(bool on);
  bool replaying() const { return replayed_; }
  size_t recordings() const { return recordings_.size(); }

  // Outputs as views of the executor's own memory, valid until the next run(), instead of
  // copies: for a caller that consumes them at once (the trainer). Off by default.
  void set_output_views(bool on) { output_views_ = on; }

  const Plan& plan() const { return plan_; }

  // Called with each node of the plan, in order, once its kernel is launched (leaves
  // included, first): how data-parallel training starts a gradient bucket's all-reduce
  // while the rest of the backward still runs. Recorded work (graph replay) runs without it.
  void set_after_node(std::function<void(NodeId, const Tensor&)> hook) { after_node_ = std::move(hook); }

  // Raises, as the CPU backend would have while running, an index fault that the backend's
  // kernels recorded (GPU kernels cannot throw): "while running <node>: op 'gather': index
  // 12 at position 3 is outside [0, 10)". Waits for the launched work on such backends;
  // call it where the results are needed anyway. evaluate() calls it.
  void check_faults();

  // Per-op wall time accumulated over runs while profiling is on (after synchronising the
  // backend per kernel, so it slows GPU runs). Sorted, largest first. By shape, each op's
  // time is split by its inputs' shapes ("conv2d [32,14,14,8] [3,3,1,8]"): which call of an
  // op costs what.
  enum class Profiling { off, by_op, by_op_and_shapes };
  void set_profiling(Profiling how) { profiling_ = how; }
  struct OpTime {
    std::string op;  // the op's name, and under by_op_and_shapes its inputs' shapes
    double seconds;
    int64_t calls;
  };
  std::vector<OpTime> profile() const;
  size_t arena_bytes() const { return plan_.memory.arena_bytes; }

 private:
  const Graph& graph_;
  Plan plan_;
  Backend& backend_;
  std::shared_ptr<Storage> arena_;
  std::vector<size_t> arena_offset_;  // per node id; SIZE_MAX if not in the arena
  bool graph_replay_ = false, output_views_ = false, replayed_ = false;
  // Graph replay: every computed value's fixed storage, and the leaves as bound this run.
  std::vector<Tensor> fixed_values_;
  std::vector<Tensor> leaf_buffers_;  // fixed buffers of host-fed leaves, by node id
  int64_t fixed_runs_ = 0;
  struct Recording {
    std::vector<const void*> in_place;  // the address of each leaf read in place (nullptr: copied)
    std::unique_ptr<RecordedWork> work;
  };
  std::vector<Recording> recordings_;  // most recently used last

  // Gives every planned node its output storage (arena, or fresh for outputs outside it).
  void bind_computed(std::vector<Tensor>& values) const;
  Tensor fed_value(NodeId leaf, const Feeds& feeds) const;
  void launch_all(std::vector<Tensor>& values);
  std::vector<Tensor> hand_out(const std::vector<Tensor>& values, bool fixed) const;
  std::vector<const void*> bind_leaves(const Feeds& feeds);
  std::function<void(NodeId, const Tensor&)> after_node_;
  Profiling profiling_ = Profiling::off;
  std::map<std::string, std::pair<double, int64_t>> op_times_;
};

// compile + Executor + run, for one-off evaluation (tests, tools).
std::vector<Tensor> evaluate(const Graph& graph, const std::vector<NodeId>& outputs, const Feeds& feeds,
                             Backend& backend);

}  // namespace agilenn
