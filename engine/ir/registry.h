// The op registry: per op, a shape rule and a vjp rule written in registry ops.
// Kernels live with the backends (runtime/backend.h), which say what they support.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/ir/value.h"

namespace agilenn {

struct TypeInfo {
  Shape shape;
  DType dtype;
};

// What a vjp rule sees: the node, its inputs and output as Values, and the incoming
// gradient. `needs(i)` says whether input i's gradient is wanted, so a rule can skip work.
struct VjpContext {
  Graph& graph;
  const Node& node;
  std::vector<Value> inputs;
  Value output;
  Value grad_output;
  std::vector<bool> wanted;
  bool needs(size_t i) const { return wanted.at(i); }
};

// Returns one gradient per input; an empty Value means "no gradient flows here".
// The gradient may have any shape that broadcasts to the input's shape: the autodiff
// driver reduces it.
using VjpRule = std::function<std::vector<Value>(const VjpContext&)>;
using ShapeRule = std::function<TypeInfo(const Graph&, const std::vector<NodeId>&, const Attrs&)>;

enum class Derivative : uint8_t {
  rule,      // vjp given by `vjp`
  zero,      // derivative zero almost everywhere (masks, argmin, stop_gradient, leaves)
  undefined  // no gradient defined: grad refuses with an error naming the op
};

struct OpDef {
  std::string name;
  ShapeRule shape;
  Derivative derivative = Derivative::undefined;
  VjpRule vjp;
  // Leaves are fed or filled, not computed from inputs; they are never merged by CSE
  // when they carry a name.
  bool is_leaf = false;
  // Why `undefined` (shown in grad's error).
  std::string no_vjp_reason;
  // Elementwise on every backend: element i of the output is computed from element i of
  // each input of the output's shape (and any element of broadcast ones) and written after
  // it was read. So the output may take the memory of such an input that dies here (the
  // memory plan's in-place reuse), and recomputing it costs one pass over memory that is
  // being read anyway (rematerialisation).
  bool elementwise = false;
  // An elementwise op whose kernels evaluate a transcendental function per element (exp,
  // sigmoid, ...): on a CPU many times the cost of the memory pass, so rematerialisation
  // keeps its output rather than recompute it (a step's sigmoids recomputed cost more time
  // than all its other recomputation together).
  bool transcendental = false;
};

class OpRegistry {
 public:
  static OpRegistry& instance();
  // Registering a name twice is an error.
  void add(OpDef def);
  const OpDef& get(const std::string& name) const;
  const OpDef* find(const std::string& name) const;
  std::vector<std::string> names() const;
  // Attaches a vjp rule to a registered op (the derivative table does this).
  void set_vjp(const std::string& name, VjpRule rule);
  void set_zero_derivative(const std::string& name);

 private:
  std::vector<std::unique_ptr<OpDef>> defs_;
};

// Ensures the built-in ops and their derivative table are registered (idempotent).
void register_builtin_ops();

}  // namespace agilenn
