// The setup the training tests share: an AgileNN step's initial parameters and its
// zero-point table, computed once on the CPU, and SGDW trainers of fresh steps made from
// them on any backend.
#pragma once

#include <cstdint>
#include <memory>
#include <utility>

#include "engine/runtime/backend.h"
#include "engine/train/step.h"
#include "engine/train/trainer.h"

namespace agilenn::testing {

struct AgileNNTrainers {
  AgileNNTrainers(train::AgileNNStepOptions opt, uint64_t seed)
      : options(std::move(opt)),
        init(train::build_agilenn_step(options)->params.initialise(seed, DType::f32)),
        table(train::compute_zero_point_table(options.preset, options.classes, init, DType::f32, cpu_backend())) {}

  // SGDW at 0.1, cosine over `schedule_steps`, on `backend`, the table set.
  std::unique_ptr<train::Trainer> make(Backend& backend, int64_t schedule_steps, bool graph_replay = false,
                                       const CompileOptions& compile = {}) const {
    auto t = std::make_unique<train::Trainer>(train::build_agilenn_step(options), init,
                                              std::make_unique<train::SGDW>(train::CosineSchedule{0.1, schedule_steps, 0}),
                                              backend, compile);
    t->set_input(t->graph().zero_point_table, table);
    t->executor().set_graph_replay(graph_replay);
    return t;
  }

  train::AgileNNStepOptions options;
  nn::TensorMap init;
  Tensor table;
};

}  // namespace agilenn::testing
