#include "engine/runtime/backend.h"

#include "engine/core/error.h"

namespace agilenn {

void KernelTable::add(const std::string& op, Kernel kernel) {
  AGILENN_CHECK(!kernels_.count(op), "kernel for op '" << op << "' added twice");
  kernels_[op] = std::move(kernel);
}

const Kernel* KernelTable::find(const std::string& op) const {
  auto it = kernels_.find(op);
  return it == kernels_.end() ? nullptr : &it->second;
}

std::vector<std::string> KernelTable::ops() const {
  std::vector<std::string> out;
  for (const auto& [op, k] : kernels_) out.push_back(op);
  return out;
}

void Backend::run(const Node& node, std::span<const Tensor> inputs, Tensor& out) const {
  const Kernel* k = kernels().find(node.op_name());
  AGILENN_CHECK(k, "backend '" << name() << "' has no kernel for op '" << node.op_name() << "'");
  (*k)(node, inputs, out);
}

}  // namespace agilenn
