#include "engine/train/trainer.h"

#include <cmath>

#include "engine/core/error.h"

namespace agilenn::train {
namespace {

bool same_tensor(const Tensor& a, const Tensor& b) {
  return a.storage() == b.storage() && a.offset_bytes() == b.offset_bytes() && a.shape() == b.shape() &&
         a.dtype() == b.dtype();
}

}  // namespace

Trainer::Trainer(std::unique_ptr<StepGraph> step, nn::TensorMap values, std::unique_ptr<Optimizer> optimizer,
                 Backend& backend)
    : step_(std::move(step)), backend_(backend), optimizer_(std::move(optimizer)) {
  for (const nn::ParamInfo& info : step_->params.all()) {
    auto it = values.find(info.name);
    AGILENN_CHECK(it != values.end(), "no value for '" << info.name << "'");
    AGILENN_CHECK(it->second.shape() == info.shape, "value for '" << info.name << "' is " << shape_str(it->second.shape())
                                                                  << ", the model declares " << shape_str(info.shape));
  }
  // Updates happen in place: own the values (fresh memory of the backend), so the caller's
  // tensors stay as they were.
  for (const auto& [name, t] : values) values_.emplace(name, backend_.copy(t));
  AGILENN_CHECK(step_->grads.empty() || optimizer_, "a training step needs an optimizer");
  executor_ = std::make_unique<Executor>(step_->graph, compile(step_->graph, step_outputs(*step_)), backend_);
}

void Trainer::set_input(const std::string& name, const Tensor& value) {
  extra_[name] = value.device() == backend_.device() ? value : backend_.to_device(value);
}

void Trainer::load_state(const nn::TensorMap& values, const nn::TensorMap& slots) {
  for (const auto& [name, t] : values) {
    auto it = values_.find(name);
    AGILENN_CHECK(it != values_.end(), "load_state: the step has no value '" << name << "'");
    AGILENN_CHECK(it->second.shape() == t.shape() && it->second.dtype() == t.dtype(),
                  "load_state: '" << name << "' is " << shape_str(t.shape()) << " " << dtype_name(t.dtype())
                                  << ", the step's " << shape_str(it->second.shape()) << " "
                                  << dtype_name(it->second.dtype()));
    backend_.copy_into(t, it->second);
  }
  AGILENN_CHECK(slots.empty() || optimizer_, "load_state: optimizer slots given to a step without an optimizer");
  for (const auto& [name, t] : slots) {
    auto it = optimizer_->slots().find(name);
    if (it == optimizer_->slots().end()) {
      optimizer_->slots().emplace(name, backend_.copy(t));
    } else {
      AGILENN_CHECK(it->second.shape() == t.shape() && it->second.dtype() == t.dtype(),
                    "load_state: slot '" << name << "' is " << shape_str(t.shape()) << ", the optimizer's "
                                         << shape_str(it->second.shape()));
      backend_.copy_into(t, it->second);
    }
  }
}

nn::TensorMap Trainer::host_values() const {
  nn::TensorMap out;
  for (const auto& [name, t] : values_) out.emplace(name, backend_.to_host(t));
  return out;
}

nn::TensorMap Trainer::host_slots() const {
  return optimizer_ ? optimizer_->host_slots(backend_) : nn::TensorMap{};
}

StepResult Trainer::step(const Tensor& images, const Tensor& labels, int64_t global_step, const data::Batch* next) {
  const int64_t t = global_step >= 0 ? global_step : step_count_;
  Feeds feeds = extra_;
  for (const nn::ParamInfo& info : step_->params.all()) feeds[info.name] = values_.at(info.name);
  if (staged_ && same_tensor(staged_->host_images, images) && same_tensor(staged_->host_labels, labels)) {
    feeds["images"] = staged_->images;
    feeds["labels"] = staged_->labels;
  } else {
    feeds["images"] = backend_.upload(images);
    feeds["labels"] = backend_.upload(labels);
  }
  staged_.reset();
  backend_.await_uploads();
  // Started before this step's kernels are launched, the next batch's upload runs beside them.
  if (next) staged_ = Staged{next->images, next->labels, backend_.upload(next->images), backend_.upload(next->labels)};
  if (!step_->dropout_counter.empty())
    feeds[step_->dropout_counter] = Tensor::scalar(static_cast<double>(t), DType::i32);
  const std::vector<Tensor> out = executor_->run(feeds);

  StepResult r;
  r.loss = backend_.to_host(out[0]).item(0);
  size_t i = 1;
  for (const auto& [name, v] : step_->metrics) r.metrics[name] = backend_.to_host(out[i++]).item(0);
  // The loss is on the host, so the step's kernels are done: an index fault they recorded
  // stops the step before the update, as the CPU's kernels would have.
  executor_->check_faults();
  if (!std::isfinite(r.loss))
    AGILENN_THROW("step " << t << ": loss is " << r.loss << "; parameters left as they were");
  std::vector<Tensor> grads(out.begin() + static_cast<long>(i), out.begin() + static_cast<long>(i + step_->grads.size()));
  i += step_->grads.size();
  if (optimizer_ && !grads.empty()) {
    const NonFinite bad = optimizer_->apply(values_, step_->trainable, grads, t, backend_);
    AGILENN_CHECK(!bad.found(), "step " << t << ": gradient of '" << step_->trainable[static_cast<size_t>(bad.tensor)]
                                        << "' is not finite at element " << bad.element
                                        << "; parameters left as they were");
  }
  // Into the state tensors' own memory: their addresses stay fixed from step to step.
  for (const auto& [name, v] : step_->state_updates) backend_.copy_into(out[i++], values_.at(name));
  ++step_count_;
  return r;
}

}  // namespace agilenn::train
