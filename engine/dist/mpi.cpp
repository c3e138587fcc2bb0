// The MPI communicator: host-memory collectives between the ranks of an mpirun or srun
// job. Every call is checked (errors return instead of aborting) and a failure names the
// call, the file and the line. Only the thread that called init() calls MPI.
#include <mpi.h>

#include <cstdlib>
#include <limits>

#include "engine/core/error.h"
#include "engine/dist/communicator.h"

#define AGILENN_MPI_CHECK(call)                                                                     \
  do {                                                                                              \
    const int agilenn_mpi_status_ = (call);                                                         \
    if (agilenn_mpi_status_ != MPI_SUCCESS) {                                                       \
      char agilenn_mpi_text_[MPI_MAX_ERROR_STRING];                                                 \
      int agilenn_mpi_len_ = 0;                                                                     \
      MPI_Error_string(agilenn_mpi_status_, agilenn_mpi_text_, &agilenn_mpi_len_);                  \
      AGILENN_THROW(__FILE__ << ":" << __LINE__ << ": " << #call << " failed: "                    \
                             << std::string(agilenn_mpi_text_, static_cast<size_t>(agilenn_mpi_len_))); \
    }                                                                                               \
  } while (0)

namespace agilenn::dist {
namespace {

MPI_Datatype mpi_type(DType t) {
  switch (t) {
    case DType::f32: return MPI_FLOAT;
    case DType::f64: return MPI_DOUBLE;
    case DType::i32: return MPI_INT32_T;
    default: AGILENN_THROW("all-reduce: no MPI type for " << dtype_name(t));
  }
}

int mpi_count(int64_t count) {
  AGILENN_CHECK(count >= 0 && count <= std::numeric_limits<int>::max(),
                "all-reduce of " << count << " values: MPI counts are int; split it");
  return static_cast<int>(count);
}

class MpiPending final : public PendingReduction {
 public:
  explicit MpiPending(MPI_Request r) : request_(r) {}
  ~MpiPending() override {
    if (request_ != MPI_REQUEST_NULL) MPI_Wait(&request_, MPI_STATUS_IGNORE);
  }
  bool progress() override {
    if (request_ == MPI_REQUEST_NULL) return true;
    int done = 0;
    AGILENN_MPI_CHECK(MPI_Test(&request_, &done, MPI_STATUS_IGNORE));
    return done != 0;
  }
  void wait() override {
    if (request_ != MPI_REQUEST_NULL) AGILENN_MPI_CHECK(MPI_Wait(&request_, MPI_STATUS_IGNORE));
  }

 private:
  MPI_Request request_;
};

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator() {
    int initialized = 0;
    AGILENN_MPI_CHECK(MPI_Initialized(&initialized));
    if (!initialized) {
      int provided = 0;
      AGILENN_MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided));
      // Loader and compute threads run beside the one thread that calls MPI.
      AGILENN_CHECK(provided >= MPI_THREAD_FUNNELED, "MPI provides thread level " << provided << ", below "
                                                      "MPI_THREAD_FUNNELED, which agilenn needs");
    }
    AGILENN_MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
    AGILENN_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank_));
    AGILENN_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &size_));
    MPI_Comm node = MPI_COMM_NULL;
    AGILENN_MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node));
    AGILENN_MPI_CHECK(MPI_Comm_rank(node, &local_rank_));
    AGILENN_MPI_CHECK(MPI_Comm_free(&node));
  }
  std::string name() const override { return "mpi"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_rank() const override { return local_rank_; }
  void all_reduce_sum(void* data, int64_t count, DType dtype) override {
    AGILENN_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, data, mpi_count(count), mpi_type(dtype), MPI_SUM, MPI_COMM_WORLD));
  }
  std::unique_ptr<PendingReduction> start_all_reduce_sum(void* data, int64_t count, DType dtype) override {
    MPI_Request r = MPI_REQUEST_NULL;
    AGILENN_MPI_CHECK(
        MPI_Iallreduce(MPI_IN_PLACE, data, mpi_count(count), mpi_type(dtype), MPI_SUM, MPI_COMM_WORLD, &r));
    return std::make_unique<MpiPending>(r);
  }
  void broadcast(void* data, size_t bytes, int root) override {
    AGILENN_MPI_CHECK(MPI_Bcast(data, mpi_count(static_cast<int64_t>(bytes)), MPI_BYTE, root, MPI_COMM_WORLD));
  }
  void barrier() override { AGILENN_MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD)); }
  [[noreturn]] void abort(int code) override {
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);
  }

 private:
  int rank_ = 0, size_ = 1, local_rank_ = 0;
};

}  // namespace

std::unique_ptr<Communicator> mpi_world() { return std::make_unique<MpiCommunicator>(); }

void mpi_finalize() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

}  // namespace agilenn::dist
