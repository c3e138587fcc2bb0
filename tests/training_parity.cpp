#include "tests/training_parity.h"

#include <algorithm>
#include <cmath>

#include "engine/core/error.h"

namespace agilenn::testing {
namespace {

double max_abs(const Tensor& t) {
  double m = 0;
  for (int64_t i = 0; i < t.numel(); ++i) m = std::max(m, std::abs(t.item(i)));
  return m;
}

// after − before, element by element, in float64.
Tensor delta(const Tensor& after, const Tensor& before) {
  Tensor d = Tensor::zeros(after.shape(), DType::f64);
  for (int64_t i = 0; i < d.numel(); ++i) d.set_item(i, after.item(i) - before.item(i));
  return d;
}

// The worst of |candidate − reference| / max(max|reference|, floor · largest max|reference|).
Discrepancy compare(const nn::TensorMap& reference, const nn::TensorMap& candidate) {
  double largest = 0;
  for (const auto& [name, t] : reference) largest = std::max(largest, max_abs(t));
  Discrepancy worst;
  for (const auto& [name, r] : reference) {
    auto it = candidate.find(name);
    AGILENN_CHECK(it != candidate.end(), "teacher_forced_steps: the candidate has no '" << name << "'");
    const Tensor& c = it->second;
    AGILENN_CHECK(c.shape() == r.shape(), "teacher_forced_steps: '" << name << "' differs in shape");
    double err = 0;
    for (int64_t i = 0; i < r.numel(); ++i) err = std::max(err, std::abs(c.item(i) - r.item(i)));
    const double scale = std::max(max_abs(r), 1e-2 * largest) + 1e-30;
    if (err / scale > worst.error) worst = {err / scale, name};
  }
  return worst;
}

}  // namespace

std::vector<StepComparison> teacher_forced_steps(train::Trainer& reference, train::Trainer& candidate,
                                                 const std::vector<data::Batch>& batches) {
  const std::vector<std::string>& trainable = reference.graph().trainable;
  std::vector<StepComparison> out;
  for (size_t s = 0; s < batches.size(); ++s) {
    const nn::TensorMap before = candidate.host_values(), slots_before = candidate.host_slots();
    // Host copies: on the CPU backend host_values() shares the live tensors' storage.
    nn::TensorMap start;
    for (const auto& [name, t] : before) start.emplace(name, t.clone());
    reference.load_state(start, slots_before);
    const auto global = static_cast<int64_t>(s);
    const data::Batch* next = s + 1 < batches.size() ? &batches[s + 1] : nullptr;
    StepComparison c;
    c.step = global;
    c.reference_loss = reference.step(batches[s].images, batches[s].labels, global).loss;
    c.candidate_loss = candidate.step(batches[s].images, batches[s].labels, global, next).loss;
    c.loss_error = std::abs(c.candidate_loss - c.reference_loss) / (std::abs(c.reference_loss) + 1e-30);

    const nn::TensorMap ra = reference.host_values(), ca = candidate.host_values();
    nn::TensorMap ru, cu, rs, cs;
    for (const std::string& name : trainable) {
      ru.emplace(name, delta(ra.at(name), start.at(name)));
      cu.emplace(name, delta(ca.at(name), start.at(name)));
    }
    for (const auto& [name, t] : start) {
      if (std::find(trainable.begin(), trainable.end(), name) != trainable.end()) continue;
      rs.emplace(name, ra.at(name));
      cs.emplace(name, ca.at(name));
    }
    c.update = compare(ru, cu);
    c.slot = compare(reference.host_slots(), candidate.host_slots());
    c.state = compare(rs, cs);
    out.push_back(c);
  }
  return out;
}

}  // namespace agilenn::testing
