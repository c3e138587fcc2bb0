// Batch-norm statistics for evaluation recomputed over training batches ("precise BN",
// as PyTorch's torch.optim.swa_utils.update_bn). The seed evaluates with moving averages
// (new = 0.99·old + 0.01·batch): while the weights still move fast — the first epochs of
// a short run — those lag far behind the statistics the weights produce, most of all in
// the batch norms over the logits, and evaluation can fall to chance while the training
// batches are classified well.
#pragma once

#include <functional>

#include "engine/data/synthetic.h"
#include "engine/train/step.h"

namespace agilenn::train {

// `forward`: a train-mode step built without gradients (AgileNNStepOptions::gradients =
// false, or build_reference_step(..., gradients = false)), which records each moving
// statistic's batch statistic. Runs it over `batches` batches `batch(0..batches-1)` with
// `values` (every parameter and state it reads; host tensors or tensors in the backend's
// memory), each batch norm normalising by its batch's statistics as in training, and
// returns for each moving-statistics state the mean over the batches of its batch
// statistic (the batch mean; the unbiased batch variance, which the moving average also
// takes in): host tensors, shaped and typed as the states.
nn::TensorMap recompute_batch_norm_statistics(const StepGraph& forward, const nn::TensorMap& values,
                                              const std::function<data::Batch(int64_t)>& batch, int64_t batches,
                                              Backend& backend);

}  // namespace agilenn::train
