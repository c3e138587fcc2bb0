// Training-step graphs: built once per shape, then compiled and run every step.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "engine/models/agilenn.h"
#include "engine/runtime/backend.h"
#include "engine/xai/integrated_gradients.h"

namespace agilenn::train {

// One step as a graph: the loss, metrics, parameter gradients and state updates.
struct StepGraph {
  Graph graph;
  nn::ParamSet params;
  Value images, labels;
  Value loss;
  Value logits;              // [B, classes]
  Value attribution;         // AgileNN steps: |(f − b) ⊙ A| per feature element [B,h,w,C]
  Value channel_importance;  // AgileNN steps: P = Σ_{h,w} attribution per sample [B,C]
  Value quantized;           // AgileNN steps: the remote features after quantization
  Value centroids;           // AgileNN steps: the centroid values 6·sigmoid(raw)
  // Per-sample values [B] (correct as 0/1, skewness), for evaluation over padded batches.
  std::vector<std::pair<std::string, Value>> per_sample;
  std::vector<std::pair<std::string, Value>> metrics;  // e.g. ce, skewness, correct (a count)
  std::vector<std::string> trainable;                  // parameter names, in the order of grads
  std::vector<Value> grads;                            // empty when not training
  std::vector<std::pair<std::string, Value>> state_updates;
  // Train mode: each moving-statistics state's batch statistic (see Scope::record_batch_statistic).
  std::vector<std::pair<std::string, Value>> batch_statistics;
  // Extra leaves fed each step: name -> what they are (documented for callers).
  std::string dropout_counter;    // int32 scalar, or empty
  std::string zero_point_table;   // [classes,h,w,C] from zero_point_gradients, or empty
};

// The nodes a training step computes, in the order the Trainer reads them: loss, the
// metrics, the gradients, the state updates.
std::vector<NodeId> step_outputs(const StepGraph& step);

struct AgileNNStepOptions {
  models::AgileNNPreset preset = models::preset("tiny");
  int64_t classes = 10;
  int64_t batch = 32;
  xai::IgOptions ig;
  bool training = true;        // train-mode BN and gradients; false builds an evaluation step
  bool gradients = true;       // training without gradients: a train-mode forward (batch statistics)
  bool fused = true;           // fused attribution op (else its primitive decomposition)
  bool attribution = true;     // false: the same model's plain step, loss = CE alone, no IG
  bool zero_point_table = true;  // α = 0 gradients from a per-class table (zero baseline)
  models::QuantizerMode quantizer = models::QuantizerMode::straight_through;
  DType dtype = DType::f32;
  // > 1: SyncBN, the model's train-mode batch norms over the global batch of this many
  // data-parallel ranks (the step's all_reduce_sum nodes meet the other ranks).
  int64_t sync_bn_replicas = 1;
};

// The AgileNN step of DESIGN.md §1. The reference net (scope "ref", no stem) is frozen
// and in eval mode; its parameters are leaves the caller feeds (a pretrained body).
std::unique_ptr<StepGraph> build_agilenn_step(const AgileNNStepOptions& opt);

// The reference net with its stem on images, for pretraining: CE loss, accuracy.
// `gradients` false with `training`: a train-mode forward without gradients.
// `sync_bn_replicas` as AgileNNStepOptions'.
std::unique_ptr<StepGraph> build_reference_step(const models::AgileNNPreset& preset, int64_t classes, int64_t batch,
                                                bool training, DType dtype = DType::f32, bool gradients = true,
                                                int64_t sync_bn_replicas = 1);

// The per-class α = 0 gradient table of a (pretrained) reference body, evaluated once on
// `backend`; a host tensor.
Tensor compute_zero_point_table(const models::AgileNNPreset& preset, int64_t classes, const nn::TensorMap& values,
                                DType dtype, Backend& backend);

}  // namespace agilenn::train
