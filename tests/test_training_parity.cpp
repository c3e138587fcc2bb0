// The teacher-forced step comparison (tests/training_parity.h) that the GPU training tests
// rely on, shown to pass on identical trainers and to catch planted defects on the CPU.
#include <gtest/gtest.h>

#include "engine/models/presets.h"
#include "tests/agilenn_trainers.h"
#include "tests/test_util.h"
#include "tests/training_parity.h"

namespace agilenn::testing {
namespace {

// The CPU backend with a defect: momentum forgotten before every SGDW update.
class ForgetfulMomentumBackend final : public CpuForwardingBackend {
 public:
  void sgdw_update(std::span<Tensor> params, std::span<const Tensor> grads, std::span<Tensor> velocities,
                   const SgdwHyper& hyper, const UpdateGuard& guard) override {
    for (Tensor& v : velocities) v.copy_from(Tensor::zeros(v.shape(), v.dtype()));
    cpu_backend().sgdw_update(params, grads, velocities, hyper, guard);
  }
};

constexpr int64_t kBatch = 8;
constexpr int kSteps = 3;

train::AgileNNStepOptions tiny_step_options() {
  train::AgileNNStepOptions opt;
  opt.classes = 10;
  opt.batch = kBatch;
  opt.quantizer = models::QuantizerMode::soft;
  return opt;
}

struct Fixture {
  AgileNNTrainers setup{tiny_step_options(), 17};
  std::vector<data::Batch> batches;

  Fixture() {
    const int64_t side = models::preset("tiny").input_size;
    const data::SyntheticDataset ds(10, side, side, 3, 64, 5);
    for (int s = 0; s < kSteps; ++s) batches.push_back(ds.batch(s * kBatch, kBatch));
  }
  std::unique_ptr<train::Trainer> trainer(Backend& b, int64_t schedule_steps = 100) const {
    return setup.make(b, schedule_steps);
  }
};

TEST(TeacherForcedSteps, IdenticalTrainersAgreeExactlyAtEveryStep) {
  const Fixture f;
  auto a = f.trainer(cpu_backend()), b = f.trainer(cpu_backend());
  const auto steps = teacher_forced_steps(*a, *b, f.batches);
  ASSERT_EQ(steps.size(), static_cast<size_t>(kSteps));
  for (const StepComparison& c : steps) {
    EXPECT_EQ(c.loss_error, 0.0) << "step " << c.step;
    EXPECT_EQ(c.update.error, 0.0) << "step " << c.step << " " << c.update.tensor;
    EXPECT_EQ(c.slot.error, 0.0) << "step " << c.step << " " << c.slot.tensor;
    EXPECT_EQ(c.state.error, 0.0) << "step " << c.step << " " << c.state.tensor;
  }
  // The trainers really moved: the comparison is not of two frozen states.
  EXPECT_NE(steps[0].reference_loss, steps[2].reference_loss);
}

// Step 0 starts from empty slots, so both agree; from step 1 the forgotten momentum is
// most of the update (momentum 0.9), far above the 1e-2 the GPU tests allow.
TEST(TeacherForcedSteps, CatchLostMomentumFromTheSecondStep) {
  const Fixture f;
  ForgetfulMomentumBackend forgetful;
  auto a = f.trainer(cpu_backend()), b = f.trainer(forgetful);
  const auto steps = teacher_forced_steps(*a, *b, f.batches);
  EXPECT_EQ(steps[0].update.error, 0.0);
  for (int s = 1; s < kSteps; ++s) {
    EXPECT_GT(steps[static_cast<size_t>(s)].update.error, 0.1) << "step " << s;
    EXPECT_GT(steps[static_cast<size_t>(s)].slot.error, 0.1) << "step " << s;
  }
}

TEST(TeacherForcedSteps, CatchAWrongLearningRateSchedule) {
  const Fixture f;
  auto a = f.trainer(cpu_backend(), 100), b = f.trainer(cpu_backend(), 4);
  const auto steps = teacher_forced_steps(*a, *b, f.batches);
  EXPECT_EQ(steps[0].update.error, 0.0);  // lr(0) is the same
  // lr(2) over 4 steps is half of lr(2) over 100: every update differs by about half.
  EXPECT_GT(steps[2].update.error, 0.3);
}

}  // namespace
}  // namespace agilenn::testing
