#include "engine/ir/registry.h"

#include "engine/core/error.h"

namespace agilenn {

// Defined in shape_rules.cpp. Derivatives are added by engine/autodiff (derivatives.h).
void register_shape_rules(OpRegistry& registry);

OpRegistry& OpRegistry::instance() {
  static OpRegistry registry;
  static const bool initialised = [] {
    register_shape_rules(registry);
    return true;
  }();
  (void)initialised;
  return registry;
}

void register_builtin_ops() { (void)OpRegistry::instance(); }

void OpRegistry::add(OpDef def) {
  AGILENN_CHECK(!find(def.name), "op '" << def.name << "' registered twice");
  AGILENN_CHECK(def.shape, "op '" << def.name << "' has no shape rule");
  defs_.push_back(std::make_unique<OpDef>(std::move(def)));
}

const OpDef* OpRegistry::find(const std::string& name) const {
  for (const auto& d : defs_)
    if (d->name == name) return d.get();
  return nullptr;
}

const OpDef& OpRegistry::get(const std::string& name) const {
  const OpDef* d = find(name);
  AGILENN_CHECK(d, "unknown op '" << name << "'");
  return *d;
}

std::vector<std::string> OpRegistry::names() const {
  std::vector<std::string> out;
  for (const auto& d : defs_) out.push_back(d->name);
  return out;
}

void OpRegistry::set_vjp(const std::string& name, VjpRule rule) {
  OpDef& d = const_cast<OpDef&>(get(name));
  AGILENN_CHECK(d.derivative == Derivative::undefined && !d.vjp, "op '" << name << "' already has a derivative");
  d.derivative = Derivative::rule;
  d.vjp = std::move(rule);
}

void OpRegistry::set_zero_derivative(const std::string& name) {
  OpDef& d = const_cast<OpDef&>(get(name));
  AGILENN_CHECK(d.derivative == Derivative::undefined && !d.vjp, "op '" << name << "' already has a derivative");
  d.derivative = Derivative::zero;
}

}  // namespace agilenn
