#include "kernels/cuda/cuda_kernels.h"

namespace agilenn::cuda {

void register_indexing(KernelTable&) {}

}  // namespace agilenn::cuda
