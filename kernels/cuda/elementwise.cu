#include "kernels/cuda/cuda_kernels.h"

namespace agilenn::cuda {

void register_elementwise(KernelTable&) {}

}  // namespace agilenn::cuda
