// The CPU thread pool (engine/runtime/threads.h): every piece of a loop runs once, errors
// come back to the caller, nested and concurrent loops finish, and a training step gives
// bit-identical results whether or not another thread keeps a core busy (pieces then go
// to different threads).
#include <cblas.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "engine/core/error.h"
#include "engine/data/synthetic.h"
#include "engine/models/presets.h"
#include "engine/runtime/threads.h"
#include "engine/train/trainer.h"
#include "tests/agilenn_trainers.h"

namespace agilenn {
namespace {

// Restores the configured thread count when a test ends.
struct ThreadCount {
  explicit ThreadCount(int n) { threads::set_count(n); }
  ~ThreadCount() { threads::set_count(0); }
};

TEST(Threads, CountIsPositiveAndDescribed) {
  EXPECT_GE(threads::count(), 1);
  EXPECT_NE(threads::describe().find("thread"), std::string::npos) << threads::describe();
}

// OpenBLAS 0.3.21 (Debian's) runs the SSE3-only Prescott kernels on an Intel CPU model it
// does not know, this project's VMs among them; the engine picks from the CPU's features
// instead (threads.cpp). Whatever the CPU, a CPU with AVX2 never runs Prescott's GEMMs unless
// the user asked for them.
TEST(Threads, OpenBlasRunsKernelsForTheCpusVectorUnits) {
  threads::count();  // configures the pool and OpenBLAS
  const std::string kernels = openblas_get_corename();
  EXPECT_NE(threads::describe().find("OpenBLAS kernels " + kernels), std::string::npos) << threads::describe();
  __builtin_cpu_init();
  if (std::getenv("OPENBLAS_CORETYPE") || !__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma"))
    GTEST_SKIP() << "OPENBLAS_CORETYPE is set or this CPU has no AVX2/FMA; OpenBLAS runs " << kernels;
  EXPECT_NE(kernels, "Prescott") << threads::describe();
}

TEST(Threads, EveryIndexRunsOnceInPiecesThatDependOnlyOnTheSplit) {
  for (int t : {1, 2, 3, 4}) {
    const ThreadCount tc(t);
    for (int64_t n : {1, 2, 7, 64, 1000, 100003})
      for (int64_t chunks : {1, 2, 3, 16, 5000}) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        std::vector<std::atomic<int64_t>> piece_of(static_cast<size_t>(n));
        threads::parallel_for(n, chunks, [&](int64_t begin, int64_t end) {
          ASSERT_LT(begin, end);
          for (int64_t i = begin; i < end; ++i) {
            hits[static_cast<size_t>(i)].fetch_add(1);
            piece_of[static_cast<size_t>(i)].store(begin);
          }
        });
        const int64_t pieces = std::min<int64_t>({chunks, n, 4096});
        for (int64_t i = 0; i < n; ++i) {
          ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1) << t << " threads, n " << n << ", index " << i;
          // Piece p is [n·p/pieces, n·(p+1)/pieces).
          int64_t p = 0;
          while (n * (p + 1) / pieces <= i) ++p;
          ASSERT_EQ(piece_of[static_cast<size_t>(i)].load(), n * p / pieces);
        }
      }
  }
}

TEST(Threads, AnErrorInOnePieceReachesTheCallerAndThePoolStillWorks) {
  const ThreadCount tc(2);
  std::atomic<int> ran{0};
  EXPECT_THROW(threads::parallel_for(64, 64,
                                     [&](int64_t begin, int64_t) {
                                       ran.fetch_add(1);
                                       if (begin == 17) throw Error("piece 17");
                                     }),
               Error);
  EXPECT_EQ(ran.load(), 64);  // the other pieces still ran
  std::atomic<int64_t> sum{0};
  threads::parallel_for(1000, 10, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) sum.fetch_add(i);
  });
  EXPECT_EQ(sum.load(), 999 * 1000 / 2);
}

TEST(Threads, NestedAndConcurrentLoopsFinish) {
  const ThreadCount tc(2);
  std::atomic<int64_t> inner{0};
  threads::parallel_for(8, 8, [&](int64_t, int64_t) {
    threads::parallel_for(100, 4, [&](int64_t begin, int64_t end) { inner.fetch_add(end - begin); });
  });
  EXPECT_EQ(inner.load(), 800);

  // Two threads issuing loops at once: one gets the pool, the other runs its pieces itself.
  std::atomic<int64_t> total{0};
  auto issue = [&] {
    for (int r = 0; r < 200; ++r)
      threads::parallel_for(1000, 16, [&](int64_t begin, int64_t end) { total.fetch_add(end - begin); });
  };
  std::thread other(issue);
  issue();
  other.join();
  EXPECT_EQ(total.load(), 2 * 200 * 1000);
}

// One tiny AgileNN step (second order) from a fixed state: its loss and every output.
std::vector<std::vector<double>> step_outputs() {
  train::AgileNNStepOptions opt;
  opt.classes = 10;
  opt.batch = 16;
  const auto t = testing::AgileNNTrainers(opt, 5).make(cpu_backend(), 100);
  const int64_t side = opt.preset.input_size;
  const data::Batch b = data::SyntheticDataset(10, side, side, 3, 32, 9).batch(0, 16);
  std::vector<std::vector<double>> out;
  for (int s = 0; s < 2; ++s) out.push_back({t->step(b.images, b.labels).loss});
  for (const auto& [name, v] : t->values()) out.push_back(v.to_vector());
  return out;
}

TEST(Threads, StepIsBitIdenticalWithACoreKeptBusy) {
  const ThreadCount tc(2);
  const auto quiet = step_outputs();
  std::atomic<bool> stop{false};
  std::thread busy([&] {
    volatile uint64_t sink = 0;
    while (!stop.load(std::memory_order_relaxed)) sink = sink + 1;
  });
  const auto loaded = step_outputs();
  stop = true;
  busy.join();
  ASSERT_EQ(quiet.size(), loaded.size());
  for (size_t i = 0; i < quiet.size(); ++i) EXPECT_EQ(quiet[i], loaded[i]) << "output " << i;
}

}  // namespace
}  // namespace agilenn
