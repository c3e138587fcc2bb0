#include "engine/train/gradient_buckets.h"

#include <algorithm>
#include <numeric>

#include "engine/core/error.h"

namespace agilenn::train {

GradientBuckets::GradientBuckets(const Graph& graph, const Plan& plan, const std::vector<NodeId>& grads,
                                 size_t bucket_bytes, Backend& backend)
    : backend_(backend), views_(grads.size()), bucket_of_(grads.size()), grads_at_node_(graph.size()) {
  AGILENN_CHECK(bucket_bytes > 0, "gradient buckets of 0 bytes");
  std::vector<size_t> position(graph.size(), plan.order.size());
  for (size_t i = 0; i < plan.order.size(); ++i) position[static_cast<size_t>(plan.order[i])] = i;
  std::vector<NodeId> node(grads.size());
  for (size_t g = 0; g < grads.size(); ++g) {
    node[g] = plan.canonical[static_cast<size_t>(grads[g])];
    AGILENN_CHECK(position[static_cast<size_t>(node[g])] < plan.order.size(),
                  "gradient " << g << " (" << graph.describe(grads[g]) << ") is not computed by the plan");
    grads_at_node_[static_cast<size_t>(node[g])].push_back(g);
  }
  std::vector<size_t> order(grads.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return position[static_cast<size_t>(node[a])] < position[static_cast<size_t>(node[b])];
  });

  // Gradients in production order, cut into buckets: offsets first, then one buffer each.
  std::vector<std::vector<std::pair<size_t, size_t>>> layout;  // per bucket: (gradient, byte offset)
  std::vector<size_t> size;
  DType dtype = grads.empty() ? DType::f32 : graph.node(grads[0]).dtype;
  for (size_t g : order) {
    const Node& n = graph.node(grads[g]);
    AGILENN_CHECK(n.dtype == dtype, "gradients of mixed dtypes (" << dtype_name(dtype) << ", " << dtype_name(n.dtype)
                                                                   << ") in one data-parallel step");
    const size_t bytes = static_cast<size_t>(numel(n.shape)) * dtype_size(n.dtype);
    if (layout.empty() || (size.back() > 0 && size.back() + bytes > bucket_bytes)) {
      layout.emplace_back();
      size.push_back(0);
    }
    layout.back().emplace_back(g, size.back());
    size.back() += bytes;
  }
  for (size_t b = 0; b < layout.size(); ++b) {
    Bucket bucket;
    bucket.buffer = Tensor({static_cast<int64_t>(size[b] / dtype_size(dtype))}, dtype, backend.allocate(size[b]));
    bucket.members = static_cast<int>(layout[b].size());
    for (const auto& [g, offset] : layout[b]) {
      const Node& n = graph.node(grads[g]);
      views_[g] = Tensor(n.shape, n.dtype, bucket.buffer.storage(), bucket.buffer.offset_bytes() + offset);
      bucket_of_[g] = b;
    }
    buckets_.push_back(std::move(bucket));
  }
}

size_t GradientBuckets::bytes() const {
  size_t total = 0;
  for (const Bucket& b : buckets_) total += b.buffer.nbytes();
  return total;
}

void GradientBuckets::begin() {
  for (Bucket& b : buckets_) b.pending = b.members;
  started_ = 0;
}

void GradientBuckets::after_node(NodeId id, const Tensor& value) {
  for (size_t g : grads_at_node_[static_cast<size_t>(id)]) {
    backend_.copy_into(value, views_[g]);
    Bucket& b = buckets_[bucket_of_[g]];
    if (--b.pending == 0) {
      backend_.start_all_reduce_sum(b.buffer);
      ++started_;
    }
  }
  if (started_ > 0) backend_.progress_collectives();
}

const std::vector<Tensor>& GradientBuckets::finish() {
  AGILENN_CHECK(started_ == buckets_.size(), "data-parallel step: " << buckets_.size() - started_ << " of "
                                                                    << buckets_.size()
                                                                    << " gradient buckets never started");
  last_wait_.first = std::chrono::steady_clock::now();
  backend_.await_collectives();
  last_wait_.second = std::chrono::steady_clock::now();
  return views_;
}

void GradientBuckets::reduce_all_now() {
  for (Bucket& b : buckets_) backend_.start_all_reduce_sum(b.buffer);
  backend_.await_collectives();
  backend_.synchronize();
}

}  // namespace agilenn::train
