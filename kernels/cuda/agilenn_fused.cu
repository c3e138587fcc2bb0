#include "kernels/cuda/cuda_kernels.h"

namespace agilenn::cuda {

void register_agilenn_fused(KernelTable&) {}

}  // namespace agilenn::cuda
