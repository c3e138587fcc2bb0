#include "engine/train/trainer.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "engine/core/error.h"

namespace agilenn::train {
namespace {

// Element k of a contiguous tensor, as a scalar view of its memory.
Tensor element(const Tensor& t, int64_t k) {
  return Tensor({}, t.dtype(), t.storage(), t.offset_bytes() + static_cast<size_t>(k) * dtype_size(t.dtype()));
}

bool same_tensor(const Tensor& a, const Tensor& b) {
  return a.storage() == b.storage() && a.offset_bytes() == b.offset_bytes() && a.shape() == b.shape() &&
         a.dtype() == b.dtype();
}

}  // namespace

CompileOptions step_compile_options(const Backend& backend, std::optional<size_t> memory_budget) {
  CompileOptions options;
  options.memory_budget = memory_budget;
  options.fuse = backend.device() == Device::cpu;
  return options;
}

Trainer::Trainer(std::unique_ptr<StepGraph> step, nn::TensorMap values, std::unique_ptr<Optimizer> optimizer,
                 Backend& backend, const CompileOptions& compile_options)
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
  executor_ = std::make_unique<Executor>(step_->graph, compile(step_->graph, step_outputs(*step_), compile_options),
                                         backend_);
  // Every output is consumed within the step (history, optimizer, commits).
  executor_->set_output_views(true);
  guard_ = new_update_guard(backend_);
  if (dist::world().size() > 1 && optimizer_) {
    optimizer_->set_grad_scale(1.0 / dist::world().size());
    set_gradient_bucket_bytes(size_t{25} << 20);
  }
}

void Trainer::set_gradient_bucket_bytes(size_t bytes) {
  if (dist::world().size() == 1 || step_->grads.empty()) return;
  std::vector<NodeId> grads;
  for (const Value& g : step_->grads) grads.push_back(g.id());
  buckets_ = std::make_unique<GradientBuckets>(step_->graph, executor_->plan(), grads, bytes, backend_);
  executor_->set_after_node([this](NodeId id, const Tensor& value) { buckets_->after_node(id, value); });
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

namespace {
constexpr int64_t kHistoryRows = 256;  // steps between forced read-backs of the losses
}

// Off the CPU the batch goes into one of two fixed input buffers: the one its upload was
// started in by the previous enqueue(), or the one the previous step did not read.
void Trainer::bind_batch(Feeds& feeds, const Tensor& images, const Tensor& labels) {
  if (backend_.device() == Device::cpu) {
    feeds["images"] = images;
    feeds["labels"] = labels;
    staged_.reset();
    return;
  }
  if (!images_[0].defined() || images_[0].shape() != images.shape() || labels_[0].shape() != labels.shape()) {
    for (int k = 0; k < 2; ++k) {
      images_[k] = Tensor(images.shape(), images.dtype(), backend_.allocate(images.nbytes()));
      labels_[k] = Tensor(labels.shape(), labels.dtype(), backend_.allocate(labels.nbytes()));
    }
    staged_.reset();
  }
  int slot = 1 - last_slot_;
  if (staged_ && same_tensor(staged_->host_images, images) && same_tensor(staged_->host_labels, labels)) {
    slot = staged_->slot;
  } else {
    backend_.upload_into(images, images_[slot]);
    backend_.upload_into(labels, labels_[slot]);
  }
  staged_.reset();
  last_slot_ = slot;
  feeds["images"] = images_[slot];
  feeds["labels"] = labels_[slot];
}

// The next batch's upload into the buffer this step does not read, started after this
// step waited for its own inputs and before its kernels are launched, so it runs beside
// them (the copy waits only for the steps launched before, the last readers of that
// buffer), and the next step waits for it.
void Trainer::stage(const data::Batch& next) {
  const int slot = 1 - last_slot_;
  if (backend_.device() == Device::cpu || !images_[slot].defined() || next.images.shape() != images_[slot].shape() ||
      next.labels.shape() != labels_[slot].shape())
    return;
  backend_.upload_into(next.images, images_[slot]);
  backend_.upload_into(next.labels, labels_[slot]);
  staged_ = Staged{next.images, next.labels, slot};
}

void Trainer::enqueue(const Tensor& images, const Tensor& labels, int64_t global_step, const data::Batch* next) {
  AGILENN_CHECK(!halted_, "this trainer stopped at a step whose update was refused; make a new one (from the last "
                          "checkpoint) to go on");
  const int64_t t = global_step >= 0 ? global_step : step_count_;
  Feeds feeds = extra_;
  for (const nn::ParamInfo& info : step_->params.all()) feeds[info.name] = values_.at(info.name);
  bind_batch(feeds, images, labels);
  if (!step_->dropout_counter.empty()) {
    if (!counter_.defined()) counter_ = Tensor({}, DType::i32, backend_.allocate(sizeof(int32_t)));
    // Ranks of a data-parallel job draw masks of their own (the counter keys the masks).
    backend_.set_scalar(counter_, static_cast<double>(t * dist::world().size() + dist::world().rank()));
    feeds[step_->dropout_counter] = counter_;
  }
  backend_.await_uploads();
  if (next) stage(*next);
  if (buckets_) buckets_->begin();
  const std::vector<Tensor> out = executor_->run(feeds);

  // Data parallel: the loss and the metrics summed over the ranks (into ranks_row_) with
  // the gradients, all waited for here; the history then holds the sums.
  const int64_t width = 1 + static_cast<int64_t>(step_->metrics.size());
  std::vector<Tensor> row(out.begin(), out.begin() + width);
  if (buckets_) {
    if (!ranks_row_.defined())
      ranks_row_ = Tensor({width}, out[0].dtype(), backend_.allocate(static_cast<size_t>(width) * dtype_size(out[0].dtype())));
    for (int64_t k = 0; k < width; ++k) {
      row[static_cast<size_t>(k)] = element(ranks_row_, k);
      backend_.copy_into(out[static_cast<size_t>(k)], row[static_cast<size_t>(k)]);
    }
    backend_.start_all_reduce_sum(ranks_row_);
  }
  const size_t first_grad = static_cast<size_t>(width);
  const std::vector<Tensor> grads =
      buckets_ ? buckets_->finish()
               : std::vector<Tensor>(out.begin() + static_cast<long>(first_grad),
                                     out.begin() + static_cast<long>(first_grad + step_->grads.size()));

  // The loss and the metrics into this step's history row, in the backend's memory.
  if (!history_.defined()) {
    const DType dt = out[0].dtype();
    history_ = Tensor({kHistoryRows * width}, dt, backend_.allocate(static_cast<size_t>(kHistoryRows * width) * dtype_size(dt)));
  }
  if (history_rows_ == kHistoryRows) drain_history();
  for (int64_t k = 0; k < width; ++k) {
    Tensor cell = element(history_, history_rows_ * width + k);
    AGILENN_CHECK(row[static_cast<size_t>(k)].dtype() == history_.dtype() && row[static_cast<size_t>(k)].numel() == 1,
                  "the step's loss and metrics must be scalars of one dtype");
    backend_.copy_into(row[static_cast<size_t>(k)], cell);
  }
  ++history_rows_;
  history_steps_.push_back(t);

  size_t i = first_grad + step_->grads.size();
  std::vector<Tensor> state_from, state_to;
  for (const auto& [name, v] : step_->state_updates) {
    state_from.push_back(out[i++]);
    state_to.push_back(values_.at(name));  // shares the value's memory: committed in place
  }
  if (optimizer_) {
    UpdateGuard guard;
    guard.state = guard_;
    guard.step = t;
    guard.checked = std::span<const Tensor>(row.data(), 1);  // the loss (data parallel: summed over the ranks)
    guard.commit_from = state_from;
    guard.commit_to = state_to;
    optimizer_->apply(values_, step_->trainable, grads, guard, backend_);
  } else {
    for (size_t k = 0; k < state_to.size(); ++k) backend_.copy_into(state_from[k], state_to[k]);
  }
  ++step_count_;
}

// The rows launched so far, read back into drained_ (waits for them).
void Trainer::drain_history() {
  if (history_rows_ == 0) return;
  const int64_t width = 1 + static_cast<int64_t>(step_->metrics.size());
  const double per_rank = buckets_ ? 1.0 / dist::world().size() : 1.0;  // the rows hold sums over the ranks
  const Tensor rows = backend_.to_host(Tensor({history_rows_ * width}, history_.dtype(), history_.storage(),
                                              history_.offset_bytes()));
  for (int64_t r = 0; r < history_rows_; ++r) {
    StepResult res;
    res.step = history_steps_[static_cast<size_t>(r)];
    res.loss = rows.item(r * width) * per_rank;
    int64_t k = 1;
    for (const auto& [name, v] : step_->metrics) res.metrics[name] = rows.item(r * width + k++) * per_rank;
    drained_.push_back(std::move(res));
  }
  history_rows_ = 0;
  history_steps_.clear();
}

std::vector<StepResult> Trainer::collect() {
  drain_history();
  std::vector<StepResult> out = std::exchange(drained_, {});
  try {
    // An index fault a GPU kernel met: the CPU backend's error for it.
    executor_->check_faults();
  } catch (const Error&) {
    halted_ = true;
    throw;
  }
  if (!optimizer_) return out;
  const GuardTrip trip = read_guard(backend_, guard_);
  if (!trip.tripped()) return out;
  halted_ = true;
  const auto it = std::find_if(out.begin(), out.end(), [&](const StepResult& r) { return r.step == trip.step; });
  const double loss = it != out.end() ? it->loss : std::nan("");
  if (trip.tensor == 0)
    AGILENN_THROW("step " << trip.step << ": loss is " << (std::isnan(loss) ? "nan" : loss > 0 ? "inf" : "-inf")
                          << "; parameters left as they were");
  if (trip.tensor == kFaultTrip)
    AGILENN_THROW("step " << trip.step << ": a kernel met an index outside its range; parameters left as they were");
  AGILENN_THROW("step " << trip.step << ": gradient of '" << step_->trainable[static_cast<size_t>(trip.tensor - 1)]
                        << "' is not finite at element " << trip.element << "; parameters left as they were");
}

StepResult Trainer::step(const Tensor& images, const Tensor& labels, int64_t global_step, const data::Batch* next) {
  enqueue(images, labels, global_step, next);
  std::vector<StepResult> results = collect();
  return results.back();
}

}  // namespace agilenn::train
