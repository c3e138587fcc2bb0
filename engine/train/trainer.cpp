#include "engine/train/trainer.h"

#include <cmath>

#include "engine/core/error.h"

namespace agilenn::train {
namespace {

// Index of the first NaN or infinity in a floating tensor, or -1.
int64_t first_non_finite(const Tensor& t) {
  auto scan = [&](const auto* p) -> int64_t {
    for (int64_t i = 0; i < t.numel(); ++i)
      if (!std::isfinite(p[i])) return i;
    return -1;
  };
  return t.dtype() == DType::f32 ? scan(t.data<float>()) : scan(t.data<double>());
}

}  // namespace

Trainer::Trainer(std::unique_ptr<StepGraph> step, nn::TensorMap values, std::unique_ptr<Optimizer> optimizer,
                 Backend& backend)
    : step_(std::move(step)), optimizer_(std::move(optimizer)) {
  // Updates happen in place: own the values, so the caller's tensors stay as they were.
  for (const auto& [name, t] : values) values_.emplace(name, t.clone());
  for (const nn::ParamInfo& info : step_->params.all()) {
    auto it = values_.find(info.name);
    AGILENN_CHECK(it != values_.end(), "no value for '" << info.name << "'");
    AGILENN_CHECK(it->second.shape() == info.shape, "value for '" << info.name << "' is " << shape_str(it->second.shape())
                                                                  << ", the model declares " << shape_str(info.shape));
  }
  AGILENN_CHECK(step_->grads.empty() || optimizer_, "a training step needs an optimizer");
  executor_ = std::make_unique<Executor>(step_->graph, compile(step_->graph, step_outputs(*step_)), backend);
}

StepResult Trainer::step(const Tensor& images, const Tensor& labels, int64_t global_step) {
  const int64_t t = global_step >= 0 ? global_step : step_count_;
  Feeds feeds = extra_;
  for (const nn::ParamInfo& info : step_->params.all()) feeds[info.name] = values_.at(info.name);
  feeds["images"] = images;
  feeds["labels"] = labels;
  if (!step_->dropout_counter.empty())
    feeds[step_->dropout_counter] = Tensor::scalar(static_cast<double>(t), DType::i32);
  const std::vector<Tensor> out = executor_->run(feeds);

  StepResult r;
  r.loss = out[0].item(0);
  size_t i = 1;
  for (const auto& [name, v] : step_->metrics) r.metrics[name] = out[i++].item(0);
  if (!std::isfinite(r.loss))
    AGILENN_THROW("step " << t << ": loss is " << r.loss << "; parameters left as they were");
  std::vector<Tensor> grads(out.begin() + static_cast<long>(i), out.begin() + static_cast<long>(i + step_->grads.size()));
  i += step_->grads.size();
  for (size_t k = 0; k < grads.size(); ++k) {
    const int64_t bad = first_non_finite(grads[k]);
    AGILENN_CHECK(bad < 0, "step " << t << ": gradient of '" << step_->trainable[k] << "' is not finite at element "
                                   << bad << "; parameters left as they were");
  }
  if (optimizer_ && !grads.empty()) optimizer_->apply(values_, step_->trainable, grads, t);
  for (const auto& [name, v] : step_->state_updates) values_[name] = out[i++];
  ++step_count_;
  return r;
}

}  // namespace agilenn::train
