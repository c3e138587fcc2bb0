// The ranks of a data-parallel job and the collectives between them (DESIGN.md §5).
// One process per replica, launched by mpirun or srun and bootstrapped over MPI; host
// memory is reduced through MPI, GPU memory through NCCL (the CUDA backend's, which takes
// its unique id from here). A process not launched that way is a world of one rank, and
// every collective is the identity.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <string>

#include "engine/core/tensor.h"

namespace agilenn::dist {

// A reduction started without waiting (MPI_Iallreduce); progress() drives it, wait()
// finishes it. Destroying an unfinished one waits for it.
class PendingReduction {
 public:
  virtual ~PendingReduction() = default;
  virtual bool progress() = 0;  // true once finished
  virtual void wait() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual std::string name() const = 0;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // The rank among this node's ranks (from a shared-memory split): which GPU to use.
  virtual int local_rank() const = 0;

  // Sums `count` values of `dtype` (f32, f64, i32) at `data` (host memory) over the
  // ranks, in place; every rank passes the same count and dtype, in the same order.
  virtual void all_reduce_sum(void* data, int64_t count, DType dtype) = 0;
  virtual std::unique_ptr<PendingReduction> start_all_reduce_sum(void* data, int64_t count, DType dtype) = 0;
  // `bytes` at `data` from rank `root` to every rank.
  virtual void broadcast(void* data, size_t bytes, int root) = 0;
  virtual void barrier() = 0;
  // Ends every rank of the job with `code` (MPI_Abort): what a rank does when it fails, so
  // that no other rank waits for it in a collective.
  [[noreturn]] virtual void abort(int code) = 0;
};

// The job this process belongs to: set by init(); a world of one rank before.
Communicator& world();

// Joins the job this process was launched into: MPI when the environment says mpirun or
// srun started it (OMPI_COMM_WORLD_SIZE, PMIX_RANK, PMI_RANK), else a world of one. A
// build without MPI refuses a launch of more than one rank with a message saying so.
// Idempotent. finalize() leaves the job (MPI_Finalize) at a normal exit.
void init();
void finalize();

// Whether this build can join an MPI job.
bool built_with_mpi();

// Host-memory convenience: sums a tensor (host, contiguous) in place over the ranks.
void all_reduce_sum(Tensor& host);

// A world of one rank (tests, and every process not launched by mpirun).
std::unique_ptr<Communicator> single_process();
// Replaces the world (tests); returns the previous one.
std::unique_ptr<Communicator> set_world(std::unique_ptr<Communicator> c);

// "rank r of N: " for messages of a job with more than one rank, else "".
std::string rank_prefix();

// `out` on rank 0; on the other ranks a stream that writes nothing (rank 0 alone speaks).
std::ostream& rank0_only(std::ostream& out);

}  // namespace agilenn::dist
