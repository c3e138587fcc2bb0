// Two trainers of the same step on different backends (or a backend and a planted defect),
// compared step by step from the same state ("teacher forcing"): before each step the
// reference is given the candidate's parameters, state and optimizer slots, both take the
// same batch, and their losses, parameter updates, slots and state updates are compared.
//
// Why not free-running: the AgileNN step is discontinuous (ReLU6 kinks; at the seed's
// initialisation every centroid is ≈ 3, so the remote predictor's input is nearly
// constant and batch norm amplifies its rounding). Two CPU runs whose initial weights
// differ by one float32 rounding differ by 5e-3 in the loss after 3 steps and by several
// percent after 6. From a shared state each step is smooth enough to hold to float32
// tolerance, which still exposes a lost optimizer slot, a wrong schedule, a stale batch or
// a wrong kernel at any step, not only at initialisation.
#pragma once

#include <string>
#include <vector>

#include "engine/data/synthetic.h"
#include "engine/train/trainer.h"

namespace agilenn::testing {

struct Discrepancy {
  double error = 0;  // largest difference over the scale below
  std::string tensor;
};

struct StepComparison {
  int64_t step = 0;
  double reference_loss = 0, candidate_loss = 0;
  double loss_error = 0;  // |Δ loss| / |reference loss|
  // Each tensor's largest difference is divided by its own largest reference magnitude,
  // floored at 1e-2 of the largest over all tensors of the kind: updates of parameters
  // whose gradient is mathematically zero (a bias feeding a train-mode batch norm) are
  // rounding noise and are judged against the step's scale.
  Discrepancy update, slot, state;
};

// Runs batches.size() steps (global steps 0, 1, ...); the candidate is given the next
// batch ahead (its upload overlaps the step), as agilenn-train does.
std::vector<StepComparison> teacher_forced_steps(train::Trainer& reference, train::Trainer& candidate,
                                                 const std::vector<data::Batch>& batches);

}  // namespace agilenn::testing
