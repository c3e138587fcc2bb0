// Data-parallel gradient reduction (DESIGN.md §5): the step's gradients packed into
// buckets of at most a given size, in the order the plan produces them; a bucket's
// all-reduce (Backend::start_all_reduce_sum) starts as soon as its last gradient has been
// produced, while the rest of the backward runs, and the optimizer waits only at the end.
// The buckets and their order follow from the plan alone, the same on every rank, so
// the reductions, and the runs, are reproducible.
#pragma once

#include <chrono>
#include <cstddef>
#include <utility>
#include <vector>

#include "engine/passes/passes.h"
#include "engine/runtime/backend.h"

namespace agilenn::train {

class GradientBuckets {
 public:
  // `grads`: the step's gradient nodes (the plan's outputs), all of one floating dtype.
  GradientBuckets(const Graph& graph, const Plan& plan, const std::vector<NodeId>& grads, size_t bucket_bytes,
                  Backend& backend);

  // Before each run.
  void begin();
  // The executor's after-node hook (Executor::set_after_node).
  void after_node(NodeId id, const Tensor& value);
  // After the run: waits (as Backend::await_collectives) for every bucket; the summed
  // gradients, views into the buckets, in the order of `grads`.
  const std::vector<Tensor>& finish();

  size_t buckets() const { return buckets_.size(); }
  size_t bytes() const;
  // When the last finish() began and ended waiting for the sums, on the steady clock (one
  // clock for every process of a machine): after the last rank's backward, what remains is
  // the part of the reduction the backward did not hide. (On the GPU the wait is enqueued,
  // not waited for.)
  std::pair<std::chrono::steady_clock::time_point, std::chrono::steady_clock::time_point> last_wait() const {
    return last_wait_;
  }
  // For benchmarks: sums every bucket as it is now, all started at once, and waits for them
  // (synchronising the backend); what the reduction costs when nothing hides it.
  void reduce_all_now();

 private:
  struct Bucket {
    Tensor buffer;
    int pending = 0;  // gradients not yet copied in this run
    int members = 0;
  };
  Backend& backend_;
  std::vector<Bucket> buckets_;
  std::vector<Tensor> views_;                       // per gradient
  std::vector<size_t> bucket_of_;                   // per gradient
  std::vector<std::vector<size_t>> grads_at_node_;  // per canonical node id: the gradients it is
  size_t started_ = 0;
  std::pair<std::chrono::steady_clock::time_point, std::chrono::steady_clock::time_point> last_wait_;
};

}  // namespace agilenn::train
