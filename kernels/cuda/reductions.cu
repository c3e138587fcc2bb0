#include "kernels/cuda/cuda_kernels.h"

namespace agilenn::cuda {

void register_reductions(KernelTable&) {}

}  // namespace agilenn::cuda
