#include "kernels/cuda/cuda_kernels.h"

namespace agilenn::cuda {

void register_conv2d(KernelTable&) {}

}  // namespace agilenn::cuda
