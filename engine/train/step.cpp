#include "engine/train/step.h"

#include "engine/autodiff/grad.h"
#include "engine/core/error.h"
#include "engine/runtime/executor.h"

namespace agilenn::train {
namespace {

// 1 where the argmax of the logits equals the label.
Value correct(const Value& logits, const Value& labels) {
  return ops::cast(ops::equal(ops::argmin(-logits, 1), labels), logits.dtype());
}

void finish(StepGraph& s, const nn::Scope& scope, bool training, bool gradients) {
  s.state_updates = scope.state_updates();
  s.batch_statistics = scope.batch_statistics();
  if (!training || !gradients) return;
  s.trainable = s.params.trainable_names();
  std::vector<Value> xs;
  for (const std::string& name : s.trainable) xs.emplace_back(&s.graph, s.graph.find_leaf(name));
  s.grads = grad(s.loss, xs);
}

xai::NetFn frozen_reference(const nn::Scope& root, const models::AgileNNPreset& p, int64_t classes) {
  const nn::Scope ref = root.child("ref").frozen().with_training(false);
  return [ref, p, classes](const Value& features) { return models::reference_body(ref, features, p, classes); };
}

}  // namespace

std::vector<NodeId> step_outputs(const StepGraph& s) {
  std::vector<NodeId> out{s.loss.id()};
  for (const auto& [name, v] : s.metrics) out.push_back(v.id());
  for (const Value& g : s.grads) out.push_back(g.id());
  for (const auto& [name, v] : s.state_updates) out.push_back(v.id());
  return out;
}

std::unique_ptr<StepGraph> build_agilenn_step(const AgileNNStepOptions& opt) {
  const models::AgileNNPreset& p = opt.preset;
  auto s = std::make_unique<StepGraph>();
  Graph& g = s->graph;
  const nn::Scope root = nn::Scope(g, s->params, opt.training, opt.dtype).with_batch_norm_replicas(opt.sync_bn_replicas);
  s->images = ops::leaf(g, "images", {opt.batch, p.input_size, p.input_size, 3}, opt.dtype);
  s->labels = ops::leaf(g, "labels", {opt.batch}, DType::i32);

  const models::AgileNNOutputs out = models::agilenn_forward(root, s->images, p, opt.classes, opt.quantizer);
  Value ce = ops::mean(ops::cross_entropy(out.logits, s->labels));
  Value right = correct(out.logits, s->labels);
  s->logits = out.logits;
  s->quantized = out.quantized;
  s->centroids = models::centroid_values(root.child("quantizer"), p);
  s->loss = ce;
  s->metrics = {{"ce", ce}, {"correct", ops::sum(right)}};
  s->per_sample = {{"correct", right}};
  if (opt.attribution) {
    Value table;
    if (opt.zero_point_table) {
      const Value& f = out.features;
      s->zero_point_table = "ig.zero_point_grads";
      table = ops::leaf(g, s->zero_point_table, {opt.classes, f.dim(1), f.dim(2), f.dim(3)}, opt.dtype);
    }
    const xai::IgTerms ig =
        xai::integrated_gradients(out.features, s->labels, frozen_reference(root, p, opt.classes), opt.ig, {}, table);
    const xai::AttributionLosses att = xai::attribution_losses(ig, p.local_channels(), p.rho, opt.fused);
    s->attribution = ops::abs(ig.delta * ig.a);
    s->channel_importance = ops::sum(s->attribution, {1, 2});
    s->loss = ce * p.lambda + (att.skew_loss + att.disorder_loss) * (1.0 - p.lambda);
    s->metrics.insert(s->metrics.end(), {{"skew_loss", att.skew_loss},
                                         {"disorder_loss", att.disorder_loss},
                                         {"skewness", att.mean_skewness}});
    s->per_sample.emplace_back("skewness", att.skewness);
  }
  finish(*s, root, opt.training, opt.gradients);
  return s;
}

std::unique_ptr<StepGraph> build_reference_step(const models::AgileNNPreset& p, int64_t classes, int64_t batch,
                                                bool training, DType dtype, bool gradients, int64_t sync_bn_replicas) {
  auto s = std::make_unique<StepGraph>();
  Graph& g = s->graph;
  const nn::Scope root = nn::Scope(g, s->params, training, dtype).with_batch_norm_replicas(sync_bn_replicas);
  s->images = ops::leaf(g, "images", {batch, p.input_size, p.input_size, 3}, dtype);
  s->labels = ops::leaf(g, "labels", {batch}, DType::i32);
  Value counter;
  if (training && p.reference.dropout > 0) {
    s->dropout_counter = "dropout_counter";
    counter = ops::leaf(g, s->dropout_counter, {}, DType::i32);
  }
  s->logits = models::reference_net(root.child("ref"), s->images, p, classes, counter);
  s->loss = ops::mean(ops::cross_entropy(s->logits, s->labels));
  s->metrics = {{"ce", s->loss}, {"correct", ops::sum(correct(s->logits, s->labels))}};
  s->per_sample = {{"correct", correct(s->logits, s->labels)}};
  finish(*s, root, training, gradients);
  return s;
}

Tensor compute_zero_point_table(const models::AgileNNPreset& p, int64_t classes, const nn::TensorMap& values,
                                DType dtype, Backend& backend) {
  Graph g;
  nn::ParamSet params;
  nn::Scope root(g, params, false, dtype);
  const xai::NetFn net = frozen_reference(root, p, classes);
  const Shape fshape = models::feature_shape(p);
  Value table = xai::zero_point_gradients(g, net, fshape, classes, dtype);
  Feeds feeds;
  for (const nn::ParamInfo& info : params.all()) {
    auto it = values.find(info.name);
    AGILENN_CHECK(it != values.end(), "zero-point table: no value for reference parameter '" << info.name << "'");
    feeds[info.name] = it->second;
  }
  return backend.to_host(evaluate(g, {table.id()}, feeds, backend)[0]);
}

}  // namespace agilenn::train
