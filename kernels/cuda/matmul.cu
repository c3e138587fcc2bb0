#include "kernels/cuda/cuda_kernels.h"

namespace agilenn::cuda {

void register_matmul(KernelTable&) {}

}  // namespace agilenn::cuda
