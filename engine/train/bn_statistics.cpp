#include "engine/train/bn_statistics.h"

#include "engine/core/error.h"
#include "engine/runtime/executor.h"

namespace agilenn::train {

nn::TensorMap recompute_batch_norm_statistics(const StepGraph& forward, const nn::TensorMap& values,
                                              const std::function<data::Batch(int64_t)>& batch, int64_t batches,
                                              Backend& backend) {
  AGILENN_CHECK(batches > 0, "batch-norm statistics need at least one batch, got " << batches);
  AGILENN_CHECK(forward.grads.empty(), "batch-norm statistics: give a train-mode step built without gradients");
  const auto& stats = forward.batch_statistics;
  AGILENN_CHECK(!stats.empty(), "batch-norm statistics: the step has no train-mode batch norm");
  std::vector<NodeId> outs;
  for (const auto& [name, v] : stats) outs.push_back(v.id());
  Executor ex(forward.graph, compile(forward.graph, outs), backend);
  Feeds feeds;
  for (const nn::ParamInfo& info : forward.params.all()) {
    auto it = values.find(info.name);
    AGILENN_CHECK(it != values.end(), "batch-norm statistics: no value for '" << info.name << "'");
    feeds[info.name] = it->second.device() == backend.device() ? it->second : backend.to_device(it->second);
  }
  // Sums in double, so the mean does not depend on how many batches there are.
  std::vector<std::vector<double>> sums(stats.size());
  for (int64_t b = 0; b < batches; ++b) {
    const data::Batch in = batch(b);
    feeds["images"] = backend.upload(in.images);
    feeds["labels"] = backend.upload(in.labels);
    backend.await_uploads();
    const std::vector<Tensor> out = ex.run(feeds);
    for (size_t i = 0; i < stats.size(); ++i) {
      const std::vector<double> v = backend.to_host(out[i]).to_vector();
      if (sums[i].empty()) sums[i].assign(v.size(), 0.0);
      for (size_t j = 0; j < v.size(); ++j) sums[i][j] += v[j];
    }
  }
  nn::TensorMap result;
  for (size_t i = 0; i < stats.size(); ++i) {
    const std::string& name = stats[i].first;
    const nn::ParamInfo* info = forward.params.find(name);
    AGILENN_CHECK(info, "batch-norm statistics: '" << name << "' is not a declared state");
    std::vector<double> mean = sums[i];
    for (double& x : mean) x /= static_cast<double>(batches);
    const DType dtype = values.at(name).dtype();
    AGILENN_CHECK(!result.count(name), "batch-norm statistics: '" << name << "' is recorded twice");
    result.emplace(name, Tensor::from_vector(info->shape, mean, dtype));
  }
  return result;
}

}  // namespace agilenn::train
