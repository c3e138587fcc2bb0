#include "engine/runtime/backend.h"

#include <sstream>

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

std::string index_fault_message(const std::string& op, int64_t value, int64_t position, int64_t bound) {
  std::ostringstream m;
  m << "op '" << op << "': ";
  if (op.find("cross_entropy") != std::string::npos)
    m << "label " << value << " of row " << position;
  else
    m << "index " << value << " at position " << position;
  m << " is outside [0, " << bound << ")";
  return m.str();
}

void check_update_guard(const char* update, const UpdateGuard& guard, Device device) {
  AGILENN_CHECK(guard.state.defined() && guard.state.shape() == Shape{3} && guard.state.dtype() == DType::f64 &&
                    guard.state.device() == device,
                update << " update: the guard must be a float64 [3] tensor in " << device_name(device)
                       << " memory (new_update_guard)");
  for (const Tensor& t : guard.checked)
    AGILENN_CHECK(is_floating(t.dtype()) && (t.device() == device || t.numel() == 0),
                  update << " update: a checked tensor is " << dtype_name(t.dtype()) << " in "
                         << device_name(t.device()) << " memory");
  AGILENN_CHECK(guard.commit_from.size() == guard.commit_to.size(),
                update << " update: " << guard.commit_from.size() << " commit sources, " << guard.commit_to.size()
                       << " destinations");
  for (size_t i = 0; i < guard.commit_to.size(); ++i) {
    const Tensor &from = guard.commit_from[i], &to = guard.commit_to[i];
    AGILENN_CHECK(from.shape() == to.shape() && from.dtype() == to.dtype() && is_floating(to.dtype()),
                  update << " update: commit " << i << " copies " << shape_str(from.shape()) << " "
                         << dtype_name(from.dtype()) << " into " << shape_str(to.shape()) << " "
                         << dtype_name(to.dtype()));
    AGILENN_CHECK((from.device() == device && to.device() == device) || to.numel() == 0,
                  update << " update: commit " << i << " is not in " << device_name(device) << " memory");
  }
}

void check_update_operands(const char* update, std::span<const Tensor> params, std::span<const Tensor> grads,
                           std::initializer_list<std::span<const Tensor>> slots, Device device) {
  AGILENN_CHECK(grads.size() == params.size(),
                update << " update: " << params.size() << " parameters, " << grads.size() << " gradients");
  for (const std::span<const Tensor>& s : slots)
    AGILENN_CHECK(s.size() == params.size(),
                  update << " update: " << params.size() << " parameters, " << s.size() << " slot tensors");
  auto same = [&](const Tensor& p, const Tensor& t, size_t i, const char* what) {
    AGILENN_CHECK(t.shape() == p.shape() && t.dtype() == p.dtype(),
                  update << " update: " << what << " " << i << " is " << shape_str(t.shape()) << " "
                         << dtype_name(t.dtype()) << ", its parameter " << shape_str(p.shape()) << " "
                         << dtype_name(p.dtype()));
    AGILENN_CHECK(!t.defined() || t.device() == device || t.numel() == 0,
                  update << " update: " << what << " " << i << " is in " << device_name(t.device()) << " memory, not "
                         << device_name(device));
  };
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor& p = params[i];
    AGILENN_CHECK(is_floating(p.dtype()), update << " update: parameter " << i << " is " << dtype_name(p.dtype())
                                                 << "; parameters must be floating-point");
    same(p, p, i, "parameter");
    same(p, grads[i], i, "gradient");
    for (const std::span<const Tensor>& s : slots) same(p, s[i], i, "slot");
  }
}

void Backend::sgdw_update(std::span<Tensor>, std::span<const Tensor>, std::span<Tensor>, const SgdwHyper&,
                          const UpdateGuard&) {
  AGILENN_THROW("backend '" << name() << "' has no SGDW update");
}

void Backend::adam_update(std::span<Tensor>, std::span<const Tensor>, std::span<Tensor>, std::span<Tensor>,
                          const AdamHyper&, const UpdateGuard&) {
  AGILENN_THROW("backend '" << name() << "' has no Adam update");
}

Tensor new_update_guard(Backend& backend) {
  return backend.to_device(Tensor::from_vector({3}, {-1.0, 0.0, 0.0}, DType::f64));
}

GuardTrip read_guard(Backend& backend, const Tensor& guard) {
  const Tensor h = backend.to_host(guard);
  if (h.item(0) < 0) return {};
  return {static_cast<int64_t>(h.item(0)), static_cast<int64_t>(h.item(1)), static_cast<int64_t>(h.item(2))};
}

void Backend::run(const Node& node, std::span<const Tensor> inputs, Tensor& out) const {
  const Kernel* k = kernels().find(node.op_name());
  AGILENN_CHECK(k, "backend '" << name() << "' has no kernel for op '" << node.op_name() << "'");
  (*k)(node, inputs, out);
}

void Backend::start_all_reduce_sum(Tensor& t) {
  AGILENN_CHECK(t.device() == Device::cpu, name() << " backend: no all-reduce of device memory");
  pending_.push_back(dist::world().start_all_reduce_sum(t.raw(), t.numel(), t.dtype()));
}

void Backend::progress_collectives() {
  while (!pending_.empty() && pending_.front()->progress()) pending_.erase(pending_.begin());
}

void Backend::await_collectives() {
  for (auto& p : pending_) p->wait();
  pending_.clear();
}

}  // namespace agilenn
