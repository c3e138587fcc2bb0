#include "engine/dist/communicator.h"

#include <cstdlib>
#include <ostream>
#include <utility>

#include "engine/core/error.h"

namespace agilenn::dist {
namespace {

class Finished final : public PendingReduction {
 public:
  bool progress() override { return true; }
  void wait() override {}
};

class SingleProcess final : public Communicator {
 public:
  std::string name() const override { return "single"; }
  int rank() const override { return 0; }
  int size() const override { return 1; }
  int local_rank() const override { return 0; }
  void all_reduce_sum(void*, int64_t, DType) override {}
  std::unique_ptr<PendingReduction> start_all_reduce_sum(void*, int64_t, DType) override {
    return std::make_unique<Finished>();
  }
  void broadcast(void*, size_t, int root) override {
    AGILENN_CHECK(root == 0, "broadcast from rank " << root << " in a world of one rank");
  }
  void barrier() override {}
  [[noreturn]] void abort(int code) override { std::_Exit(code); }
};

std::unique_ptr<Communicator>& current() {
  static std::unique_ptr<Communicator> c = single_process();
  return c;
}

// Whether mpirun or srun started this process (their process-management variables).
bool launched_by_mpi() {
  return std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMIX_RANK") || std::getenv("PMI_RANK");
}

#ifndef AGILENN_HAVE_MPI
// How many ranks the launcher started (1 when it says nothing).
int launched_ranks() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS"})
    if (const char* v = std::getenv(var); v && std::atoi(v) > 0) return std::atoi(v);
  return 1;
}
#endif

}  // namespace

#ifdef AGILENN_HAVE_MPI
std::unique_ptr<Communicator> mpi_world();  // mpi.cpp
void mpi_finalize();
bool built_with_mpi() { return true; }
#else
bool built_with_mpi() { return false; }
#endif

std::unique_ptr<Communicator> single_process() { return std::make_unique<SingleProcess>(); }

Communicator& world() { return *current(); }

std::unique_ptr<Communicator> set_world(std::unique_ptr<Communicator> c) { return std::exchange(current(), std::move(c)); }

void init() {
  static bool done = false;
  if (done) return;
  done = true;
  if (!launched_by_mpi()) return;
#ifdef AGILENN_HAVE_MPI
  current() = mpi_world();
#else
  AGILENN_CHECK(launched_ranks() <= 1,
                "launched as one of " << launched_ranks() << " ranks, but this build has no MPI: distributed runs "
                "need it (install Open MPI's development files, libopenmpi-dev, and configure again)");
#endif
}

void finalize() {
#ifdef AGILENN_HAVE_MPI
  if (world().name() != "single") {
    current() = single_process();
    mpi_finalize();
  }
#endif
}

void all_reduce_sum(Tensor& host) {
  AGILENN_CHECK(host.device() == Device::cpu, "dist::all_reduce_sum takes host tensors");
  world().all_reduce_sum(host.raw(), host.numel(), host.dtype());
}

std::ostream& rank0_only(std::ostream& out) {
  static std::ostream silent(nullptr);
  return world().rank() == 0 ? out : silent;
}

std::string rank_prefix() {
  const Communicator& w = world();
  return w.size() > 1 ? "rank " + std::to_string(w.rank()) + " of " + std::to_string(w.size()) + ": " : "";
}

}  // namespace agilenn::dist
