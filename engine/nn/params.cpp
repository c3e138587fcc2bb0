#include "engine/nn/params.h"

#include <cmath>
#include <random>

#include "engine/core/error.h"

namespace agilenn::nn {

const ParamInfo& ParamSet::declare(const ParamInfo& info) {
  auto it = index_.find(info.name);
  if (it != index_.end()) {
    const ParamInfo& have = infos_[it->second];
    AGILENN_CHECK(have.shape == info.shape && have.kind == info.kind,
                  "'" << info.name << "' declared again as " << shape_str(info.shape) << ", first as "
                      << shape_str(have.shape));
    return have;
  }
  index_[info.name] = infos_.size();
  infos_.push_back(info);
  return infos_.back();
}

const ParamInfo* ParamSet::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &infos_[it->second];
}

std::vector<std::string> ParamSet::trainable_names() const {
  std::vector<std::string> out;
  for (const ParamInfo& p : infos_)
    if (p.kind == LeafKind::parameter && p.trainable) out.push_back(p.name);
  return out;
}

int64_t ParamSet::count_trainable_elements() const {
  int64_t n = 0;
  for (const ParamInfo& p : infos_)
    if (p.kind == LeafKind::parameter && p.trainable) n += numel(p.shape);
  return n;
}

namespace {
// FNV-1a: a fixed string hash, so initial values are the same with every standard library.
uint64_t fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ULL;
  return h;
}
}  // namespace

TensorMap ParamSet::initialise(uint64_t seed, DType dtype) const {
  TensorMap out;
  for (const ParamInfo& p : infos_) {
    Tensor t = Tensor::zeros(p.shape, dtype);
    const uint64_t h = fnv1a(p.name);
    std::seed_seq seq{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32), static_cast<uint32_t>(h),
                      static_cast<uint32_t>(h >> 32)};
    std::mt19937_64 rng(seq);
    switch (p.init.kind) {
      case Init::zeros: break;
      case Init::ones:
        for (int64_t i = 0; i < t.numel(); ++i) t.set_item(i, 1.0);
        break;
      case Init::glorot_uniform: {
        const double limit = std::sqrt(6.0 / (p.init.fan_in + p.init.fan_out));
        std::uniform_real_distribution<double> u(-limit, limit);
        for (int64_t i = 0; i < t.numel(); ++i) t.set_item(i, u(rng));
        break;
      }
      case Init::normal: {
        std::normal_distribution<double> n(0.0, p.init.stddev);
        for (int64_t i = 0; i < t.numel(); ++i) t.set_item(i, n(rng));
        break;
      }
      case Init::logit_grid:
        for (int64_t i = 0; i < t.numel(); ++i) {
          const double q = std::pow((static_cast<double>(i) + 0.5) / static_cast<double>(t.numel()), p.init.power);
          t.set_item(i, std::log(q / (1.0 - q)));
        }
        break;
    }
    out.emplace(p.name, t);
  }
  return out;
}

Scope::Scope(Graph& graph, ParamSet& params, bool training, DType dtype)
    : graph_(&graph), params_(&params), shared_(std::make_shared<Shared>()), training_(training), dtype_(dtype) {}

Scope Scope::child(const std::string& name) const {
  Scope s = *this;
  s.prefix_ = prefix_.empty() ? name : prefix_ + "." + name;
  return s;
}

Scope Scope::frozen() const {
  Scope s = *this;
  s.trainable_ = false;
  return s;
}

Scope Scope::with_training(bool training) const {
  Scope s = *this;
  s.training_ = training;
  return s;
}

Scope Scope::with_conv_padding(ops::Padding padding) const {
  Scope s = *this;
  s.conv_padding_ = padding;
  return s;
}

Scope Scope::with_batch_norm_replicas(int64_t replicas) const {
  AGILENN_CHECK(replicas >= 1, "batch norm over " << replicas << " replicas");
  Scope s = *this;
  s.batch_norm_replicas_ = replicas;
  return s;
}

Value Scope::leaf(const std::string& name, const Shape& shape, const Init& init, LeafKind kind) const {
  const std::string full = prefix_.empty() ? name : prefix_ + "." + name;
  params_->declare(ParamInfo{full, shape, init, kind, trainable_ && kind == LeafKind::parameter});
  const NodeId existing = graph_->find_leaf(full);
  if (existing != kNoNode) return Value(graph_, existing);
  return ops::leaf(*graph_, full, shape, dtype_, kind);
}

Value Scope::parameter(const std::string& name, const Shape& shape, const Init& init) const {
  return leaf(name, shape, init, LeafKind::parameter);
}

Value Scope::state(const std::string& name, const Shape& shape, const Init& init) const {
  return leaf(name, shape, init, LeafKind::state);
}

void Scope::update_state(const Value& state_leaf, const Value& next) const {
  const Node& n = state_leaf.node();
  AGILENN_CHECK(n.op_name() == "leaf" && n.attrs.i("kind") == static_cast<int64_t>(LeafKind::state),
                "update_state needs a state leaf");
  shared_->state_updates.emplace_back(n.attrs.s("name"), next);
}

void Scope::record_batch_statistic(const Value& state_leaf, const Value& batch_value) const {
  const Node& n = state_leaf.node();
  AGILENN_CHECK(n.op_name() == "leaf" && n.attrs.i("kind") == static_cast<int64_t>(LeafKind::state),
                "record_batch_statistic needs a state leaf");
  shared_->batch_statistics.emplace_back(n.attrs.s("name"), batch_value);
}

}  // namespace agilenn::nn
