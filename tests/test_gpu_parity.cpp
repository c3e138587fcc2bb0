// The CUDA backend against the CPU backend. Every op case of the gradient checker is run
// in float32 on both, together with its first- and second-order gradient graphs, and a
// whole AgileNN step (tiny preset) is compared in its loss and every parameter gradient.
// Without a GPU the parity tests skip and print why; the kernel-table coverage test
// needs no GPU and always runs.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "engine/autodiff/grad.h"
#include "engine/ir/registry.h"
#include "engine/train/step.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/device.h"
#include "tests/gradcheck.h"
#include "tests/gpu_test_util.h"

namespace agilenn::testing {
namespace {

// GPU and CPU float32 differ by summation order and fused multiply-adds; errors are
// scaled by the tensor's largest magnitude so near-zero elements of a large tensor
// are held to the tensor's own precision.
constexpr double kRtol = 2e-4;

double max_abs(const Tensor& t) {
  double m = 0;
  for (int64_t i = 0; i < t.numel(); ++i) m = std::max(m, std::abs(t.item(i)));
  return m;
}

// `floor` bounds the scale from below for tensors that are rounding noise around zero.
double tensor_error(const Tensor& cpu, const Tensor& gpu, double rtol, double floor = 0) {
  const Tensor a = cpu.to(DType::f64), b = gpu.to(DType::f64);
  return scaled_error(a, b, rtol, rtol * std::max(max_abs(a), floor) + 1e-30);
}

TEST(CudaBackend, HasAKernelForEveryRegistryOp) {
  register_builtin_ops();
  for (const std::string& op : OpRegistry::instance().names()) {
    if (op == "leaf") continue;
    EXPECT_TRUE(cuda_backend().supports(op)) << "no CUDA kernel for op '" << op << "'";
  }
}

// One case: its output, the gradients of sum(out · probe) and the gradient of
// Σ sum(grad) (second order), all as outputs of one graph.
struct ParityGraph {
  Graph g;
  std::vector<NodeId> outputs;
};

void build_parity(ParityGraph& pg, const OpCase& c) {
  std::vector<Value> leaves, xs;
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    const InputSpec& s = c.inputs[i];
    leaves.push_back(ops::leaf(pg.g, "x" + std::to_string(i), s.shape, s.is_int() ? DType::i32 : DType::f32));
    if (!s.is_int()) xs.push_back(leaves.back());
  }
  Value out = c.build(pg.g, leaves);
  pg.outputs.push_back(out.id());
  if (xs.empty()) return;
  Value probe = ops::leaf(pg.g, "probe", out.shape(), DType::f32);
  std::vector<Value> gs = grad(ops::sum(out * probe), xs);
  Value inner;
  for (const Value& gx : gs) {
    pg.outputs.push_back(gx.id());
    inner = inner.valid() ? inner + ops::sum(gx * gx) : ops::sum(gx * gx);
  }
  for (const Value& h : grad(inner, xs)) pg.outputs.push_back(h.id());
}

class OpParity : public ::testing::TestWithParam<size_t> {};

TEST_P(OpParity, CudaMatchesCpuInValueAndFirstAndSecondOrderGradients) {
  AGILENN_SKIP_WITHOUT_GPU();
  const OpCase& c = op_cases().at(GetParam());
  ParityGraph pg;
  build_parity(pg, c);
  Feeds feeds;
  const std::vector<Tensor> xs = make_inputs(c, DType::f32, 101 + GetParam());
  for (size_t i = 0; i < xs.size(); ++i) feeds["x" + std::to_string(i)] = xs[i];
  if (const NodeId p = pg.g.find_leaf("probe"); p != kNoNode) {
    std::mt19937_64 rng(GetParam());
    std::uniform_real_distribution<double> u(-1.0, 1.0);
    Tensor probe = Tensor::zeros(pg.g.node(p).shape, DType::f32);
    for (int64_t i = 0; i < probe.numel(); ++i) probe.set_item(i, u(rng));
    feeds["probe"] = probe;
  }
  const auto cpu = evaluate(pg.g, pg.outputs, feeds, cpu_backend());
  const auto gpu = evaluate(pg.g, pg.outputs, feeds, cuda_backend());
  const double rtol = std::max(kRtol, c.f32_rtol);
  for (size_t k = 0; k < cpu.size(); ++k) {
    const Tensor g = cuda_backend().to_host(gpu[k]);
    EXPECT_LE(tensor_error(cpu[k], g, rtol), 1.0)
        << c.name << ": output " << k << " (" << pg.g.describe(pg.outputs[k]) << ")";
  }
}

INSTANTIATE_TEST_SUITE_P(AllOps, OpParity, ::testing::Range<size_t>(0, op_cases().size()),
                         [](const ::testing::TestParamInfo<size_t>& param) {
                           std::string n = op_cases().at(param.param).name;
                           for (char& ch : n)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return n + "_" + std::to_string(param.param);
                         });

// A recorded CUDA graph replays with each run's feeds: a conv net's value and filter
// gradient on three different inputs, against the CPU.
TEST(GraphReplay, ReplaysFollowTheFeedsAndMatchTheCpu) {
  AGILENN_SKIP_WITHOUT_GPU();
  Graph g;
  Value x = ops::leaf(g, "x", {3, 9, 9, 4}, DType::f32);
  Value w = ops::leaf(g, "w", {3, 3, 4, 5}, DType::f32);
  Value y = ops::sum(ops::tanh(ops::conv2d(x, w)));
  Value gw = grad(y, {w})[0];
  Executor ex(g, compile(g, {y.id(), gw.id()}), cuda_backend());
  ex.set_graph_replay(true);
  for (int run = 0; run < 3; ++run) {
    Tensor xv = Tensor::zeros({3, 9, 9, 4}, DType::f32), wv = Tensor::zeros({3, 3, 4, 5}, DType::f32);
    for (int64_t i = 0; i < xv.numel(); ++i) xv.set_item(i, std::sin(static_cast<double>(i * (run + 1))));
    for (int64_t i = 0; i < wv.numel(); ++i) wv.set_item(i, std::cos(static_cast<double>(i + run)) * 0.1);
    const auto gpu = ex.run({{"x", xv}, {"w", wv}});
    const auto cpu = evaluate(g, {y.id(), gw.id()}, {{"x", xv}, {"w", wv}}, cpu_backend());
    for (size_t k = 0; k < cpu.size(); ++k)
      EXPECT_LE(tensor_error(cpu[k], cuda_backend().to_host(gpu[k]), kRtol), 1.0) << "run " << run << " output " << k;
  }
  EXPECT_TRUE(ex.replaying());
}

// The full second-order AgileNN step, tiny preset: CPU and GPU from the same weights and
// batch. Straight-through quantization is piecewise constant, so the soft quantizer keeps
// a float32 rounding difference from flipping a code.
TEST(StepParity, TinyAgileNNStepLossAndEveryGradientMatchTheCpu) {
  AGILENN_SKIP_WITHOUT_GPU();
  train::AgileNNStepOptions opt;
  opt.preset = models::preset("tiny");
  opt.classes = 10;
  opt.batch = 8;
  opt.quantizer = models::QuantizerMode::soft;
  auto step = train::build_agilenn_step(opt);
  nn::TensorMap values = step->params.initialise(23, DType::f32);
  Feeds feeds;
  for (auto& [name, t] : values) feeds[name] = t;
  feeds[step->zero_point_table] = train::compute_zero_point_table(opt.preset, opt.classes, values, DType::f32, cpu_backend());
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(-1.5, 1.5);
  Tensor images = Tensor::zeros(step->images.shape(), DType::f32);
  for (int64_t i = 0; i < images.numel(); ++i) images.set_item(i, u(rng));
  Tensor labels = Tensor::zeros({opt.batch}, DType::i32);
  for (int64_t i = 0; i < opt.batch; ++i) labels.set_item(i, static_cast<double>((i * 7) % opt.classes));
  feeds["images"] = images;
  feeds["labels"] = labels;
  if (!step->dropout_counter.empty()) feeds[step->dropout_counter] = Tensor::scalar(3, DType::i32);

  std::vector<NodeId> outs{step->loss.id()};
  for (const Value& gv : step->grads) outs.push_back(gv.id());
  const auto cpu = evaluate(step->graph, outs, feeds, cpu_backend());
  const auto gpu = evaluate(step->graph, outs, feeds, cuda_backend());
  // The loss to 1e-4 relative; each gradient to 2e-3 of its own largest element: the
  // step chains ~100 kernels through a second-order sweep, so rounding compounds. Some
  // gradients are mathematically zero (lp.dense.bias, rp.dense.bias and the project_bn.beta
  // of blocks without a residual each feed a train-mode batch norm, which removes any
  // per-channel constant): float64 gives 1e-16, float32 rounding noise of up to 1.5e-6
  // against a largest gradient element of 2.9. Their scale is floored at 1e-2 of the
  // step's largest gradient element, so noise is not compared with noise.
  double largest = 0;
  for (size_t k = 1; k < cpu.size(); ++k) largest = std::max(largest, max_abs(cpu[k]));
  EXPECT_LE(tensor_error(cpu[0], cuda_backend().to_host(gpu[0]), 1e-4), 1.0) << "loss";
  for (size_t k = 1; k < cpu.size(); ++k)
    EXPECT_LE(tensor_error(cpu[k], cuda_backend().to_host(gpu[k]), 2e-3, 1e-2 * largest), 1.0)
        << "d loss / d " << step->trainable[k - 1];
}

// Without --cudnn-nondeterministic only deterministic cuDNN algorithms run: a dense
// convolution's forward pass and both gradients repeat bit for bit, and nothing is noted.
TEST(CudaConvolution, DefaultAlgorithmsRepeatBitForBitAndNoteNothing) {
  AGILENN_SKIP_WITHOUT_GPU();
  Graph g;
  Value x = ops::leaf(g, "x", {32, 32, 32, 24}, DType::f32);
  Value w = ops::leaf(g, "w", {3, 3, 24, 48}, DType::f32);
  Value probe = ops::leaf(g, "probe", {32, 32, 32, 48}, DType::f32);
  Value y = ops::conv2d(x, w);
  const std::vector<Value> grads = grad(ops::sum(y * probe), {x, w});
  auto filled = [](const Shape& s, int salt) {
    Tensor t = Tensor::zeros(s, DType::f32);
    for (int64_t i = 0; i < t.numel(); ++i) t.set_item(i, std::sin(static_cast<double>(i * salt % 9973)));
    return t;
  };
  const Feeds feeds{{"x", filled({32, 32, 32, 24}, 3)}, {"w", filled({3, 3, 24, 48}, 7)},
                    {"probe", filled({32, 32, 32, 48}, 11)}};
  (void)cuda_backend().take_notes();
  const std::vector<NodeId> outs{y.id(), grads[0].id(), grads[1].id()};
  const auto first = evaluate(g, outs, feeds, cuda_backend());
  const auto second = evaluate(g, outs, feeds, cuda_backend());
  for (size_t k = 0; k < outs.size(); ++k) {
    const Tensor a = cuda_backend().to_host(first[k]), b = cuda_backend().to_host(second[k]);
    EXPECT_EQ(std::memcmp(a.raw(), b.raw(), a.nbytes()), 0) << "output " << k;
  }
  EXPECT_TRUE(cuda_backend().take_notes().empty());
  // Repeating on one problem proves little (atomics often agree on small inputs): every
  // algorithm chosen so far in this process is a deterministic one.
  EXPECT_EQ(cuda::nondeterministic_convolutions(), 0u);
}

}  // namespace
}  // namespace agilenn::testing
