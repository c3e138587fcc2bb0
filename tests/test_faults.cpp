// Index faults: the wording every backend uses, and the executor's side of faults that a
// backend's kernels record instead of throwing (the GPU's), shown with a CPU backend that
// records like the GPU does. The GPU kernels themselves: tests/test_cuda_indexing.cpp.
#include <gtest/gtest.h>

#include "engine/ir/ops.h"
#include "engine/runtime/executor.h"
#include "tests/test_util.h"

namespace agilenn::testing {
namespace {

TEST(IndexFault, MessagesNameTheOpTheValueThePositionAndTheRange) {
  EXPECT_EQ(index_fault_message("gather", 12, 3, 10), "op 'gather': index 12 at position 3 is outside [0, 10)");
  EXPECT_EQ(index_fault_message("one_hot", -1, 0, 4), "op 'one_hot': index -1 at position 0 is outside [0, 4)");
  EXPECT_EQ(index_fault_message("softmax_cross_entropy", 10, 5, 10),
            "op 'softmax_cross_entropy': label 10 of row 5 is outside [0, 10)");
}

// The CPU backend, except that index checks are left to the caller: a gather records the
// first bad index as a GPU kernel would, and writes zeros.
class RecordingBackend final : public CpuForwardingBackend {
 public:
  const KernelTable& kernels() const override { return table_; }
  std::optional<IndexFault> take_fault() override { return std::exchange(fault_, std::nullopt); }

  RecordingBackend() {
    for (const std::string& op : cpu_backend().kernels().ops())
      if (op != "gather") table_.add(op, *cpu_backend().kernels().find(op));
    table_.add("gather", [this](const Node& node, std::span<const Tensor> in, Tensor& out) {
      const int64_t dim = in[0].dim(0), inner = in[0].numel() / dim;
      for (int64_t j = 0; j < in[1].numel(); ++j) {
        const int64_t v = in[1].data<int32_t>()[j];
        const bool ok = v >= 0 && v < dim;
        if (!ok && !fault_) fault_ = IndexFault{&node, node.id, j, v, dim};
        for (int64_t k = 0; k < inner; ++k) out.set_item(j * inner + k, ok ? in[0].item(v * inner + k) : 0.0);
      }
    });
  }

 private:
  KernelTable table_;
  std::optional<IndexFault> fault_;
};

struct GatherGraph {
  Graph g;
  Value out;
  GatherGraph() {
    Value x = ops::leaf(g, "x", {10, 3}, DType::f32);
    Value idx = ops::leaf(g, "idx", {4}, DType::i32);
    out = ops::sum(ops::gather(x, idx, 0));
  }
  Feeds feeds(int32_t bad) const {
    Tensor idx = Tensor::zeros({4}, DType::i32);
    for (int32_t i = 0; i < 4; ++i) idx.set_item(i, i == 3 ? bad : i);
    return {{"x", Tensor::zeros({10, 3}, DType::f32)}, {"idx", idx}};
  }
};

TEST(IndexFault, ARecordedFaultIsRaisedAsTheCpuBackendRaisesIt) {
  const GatherGraph gg;
  const std::string cpu = error_of([&] { evaluate(gg.g, {gg.out.id()}, gg.feeds(12), cpu_backend()); });
  ASSERT_NE(cpu, "");
  EXPECT_NE(cpu.find("while running "), std::string::npos) << cpu;
  EXPECT_NE(cpu.find("op 'gather': index 12 at position 3 is outside [0, 10)"), std::string::npos) << cpu;
  RecordingBackend recording;
  EXPECT_EQ(error_of([&] { evaluate(gg.g, {gg.out.id()}, gg.feeds(12), recording); }), cpu);
  // Taking the fault clears it: the next good run raises nothing.
  EXPECT_EQ(error_of([&] { evaluate(gg.g, {gg.out.id()}, gg.feeds(2), recording); }), "");
}

TEST(IndexFault, AFaultFromAnotherGraphIsNotDescribedWithThisGraphsNodes) {
  const GatherGraph a, b;
  RecordingBackend recording;
  Executor ex_a(a.g, compile(a.g, {a.out.id()}), recording), ex_b(b.g, compile(b.g, {b.out.id()}), recording);
  ex_a.run(a.feeds(-4));
  const std::string msg = error_of([&] { ex_b.check_faults(); });
  EXPECT_NE(msg.find("another graph"), std::string::npos) << msg;
  EXPECT_NE(msg.find("value -4"), std::string::npos) << msg;
  EXPECT_EQ(error_of([&] { ex_a.check_faults(); }), "");  // taken by the first check
}

}  // namespace
}  // namespace agilenn::testing
