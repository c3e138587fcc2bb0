// Runs a compiled Plan on one backend: intermediates live in one arena laid out by the
// memory plan; leaves are fed by name; outputs get storage of their own.
#pragma once

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

  const Plan& plan() const { return plan_; }
  size_t arena_bytes() const { return plan_.memory.arena_bytes; }

 private:
  const Graph& graph_;
  Plan plan_;
  Backend& backend_;
  std::shared_ptr<Storage> arena_;
  std::vector<size_t> arena_offset_;  // per node id; SIZE_MAX if not in the arena
};

// compile + Executor + run, for one-off evaluation (tests, tools).
std::vector<Tensor> evaluate(const Graph& graph, const std::vector<NodeId>& outputs, const Feeds& feeds,
                             Backend& backend = cpu_backend());

}  // namespace agilenn
