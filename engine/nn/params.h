// Parameters, state and the scope that layer builders create them through.
// Names are hierarchical ("fe.sep1.depthwise.weight") so checkpoints and exports read well.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "engine/ir/ops.h"

namespace agilenn::nn {

struct Init {
  enum Kind { zeros, ones, glorot_uniform, normal, logit_grid } kind = zeros;
  double fan_in = 0, fan_out = 0;  // glorot_uniform: limit = sqrt(6 / (fan_in + fan_out))
  double stddev = 0;               // normal(0, stddev²)
  double power = 1;                // logit_grid: logit(((i + ½) / n)^power)

  static Init Zeros() { return {zeros}; }
  static Init Ones() { return {ones}; }
  static Init Glorot(double fan_in, double fan_out) { return {glorot_uniform, fan_in, fan_out}; }
  static Init Normal(double stddev) { return {normal, 0, 0, stddev}; }
  // Element i of n: logit(((i + ½) / n)^power), so that sigmoid of the values spreads over
  // (0, 1): evenly for power 1, denser near 0 for power > 1.
  static Init LogitGrid(double power = 1) { return {logit_grid, 0, 0, 0, power}; }
};

struct ParamInfo {
  std::string name;
  Shape shape;
  Init init;
  LeafKind kind = LeafKind::parameter;  // parameter or state (batch-norm statistics)
  bool trainable = true;
};

using TensorMap = std::map<std::string, Tensor>;

// Every parameter and state tensor a model declares, in declaration order.
class ParamSet {
 public:
  // Declares a name or checks that a redeclaration agrees; returns the entry.
  const ParamInfo& declare(const ParamInfo& info);
  const ParamInfo* find(const std::string& name) const;
  const std::vector<ParamInfo>& all() const { return infos_; }
  std::vector<std::string> trainable_names() const;
  int64_t count_trainable_elements() const;

  // Fresh values from each entry's init rule; deterministic in `seed` and the name,
  // so adding a parameter does not change the others.
  TensorMap initialise(uint64_t seed, DType dtype) const;

 private:
  std::vector<ParamInfo> infos_;
  std::map<std::string, size_t> index_;
};

// Where a layer builder puts its nodes (graph), declares its tensors (params), and
// records state updates. Copying a Scope is cheap; `child` extends the name prefix.
class Scope {
 public:
  Scope(Graph& graph, ParamSet& params, bool training, DType dtype = DType::f32);

  Scope child(const std::string& name) const;
  // Leaf for `prefix.name` in this graph (created once, then reused).
  Value parameter(const std::string& name, const Shape& shape, const Init& init) const;
  Value state(const std::string& name, const Shape& shape, const Init& init) const;
  // The value the state leaf `state_leaf` should hold after this step.
  void update_state(const Value& state_leaf, const Value& next) const;
  // The statistic of this batch that the moving average `state_leaf` follows (batch norm
  // in train mode), for recomputing the statistics over many batches.
  void record_batch_statistic(const Value& state_leaf, const Value& batch_value) const;

  Graph& graph() const { return *graph_; }
  ParamSet& params() const { return *params_; }
  bool training() const { return training_; }
  DType dtype() const { return dtype_; }
  const std::string& prefix() const { return prefix_; }
  // Parameters created through this scope (and its children) are frozen: no gradients.
  Scope frozen() const;
  // Layers built through the returned scope run in inference mode (eval batch norm).
  Scope with_training(bool training) const;
  // Convolution layers built through the returned scope pad this way (default: same, the
  // seed's Keras convention; weights trained in PyTorch need symmetric).
  Scope with_conv_padding(ops::Padding padding) const;
  ops::Padding conv_padding() const { return conv_padding_; }
  // Train-mode batch norms built through the returned scope take their statistics over
  // the global batch of `replicas` data-parallel ranks (SyncBN; ops::batch_norm_train).
  Scope with_batch_norm_replicas(int64_t replicas) const;
  int64_t batch_norm_replicas() const { return batch_norm_replicas_; }

  struct Shared {
    std::vector<std::pair<std::string, Value>> state_updates;
    std::vector<std::pair<std::string, Value>> batch_statistics;
  };
  const std::vector<std::pair<std::string, Value>>& state_updates() const { return shared_->state_updates; }
  const std::vector<std::pair<std::string, Value>>& batch_statistics() const { return shared_->batch_statistics; }

 private:
  Value leaf(const std::string& name, const Shape& shape, const Init& init, LeafKind kind) const;

  Graph* graph_;
  ParamSet* params_;
  std::shared_ptr<Shared> shared_;
  std::string prefix_;
  bool training_;
  bool trainable_ = true;
  DType dtype_;
  ops::Padding conv_padding_ = ops::Padding::same;
  int64_t batch_norm_replicas_ = 1;
};

}  // namespace agilenn::nn
