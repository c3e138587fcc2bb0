// all_reduce_sum on the CPU: the input copied into the output, summed there over the ranks
// of dist::world() by MPI (blocking; every rank meets it in the same place of the plan).
#include "engine/dist/communicator.h"
#include "kernels/cpu/cpu_kernels.h"

namespace agilenn::cpu {

void register_collectives(KernelTable& t) {
  t.add("all_reduce_sum", [](const Node&, std::span<const Tensor> in, Tensor& out) {
    out.copy_from(in[0]);
    dist::world().all_reduce_sum(out.raw(), out.numel(), out.dtype());
  });
}

}  // namespace agilenn::cpu
