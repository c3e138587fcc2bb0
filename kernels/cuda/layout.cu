#include "kernels/cuda/cuda_kernels.h"

namespace agilenn::cuda {

void register_layout(KernelTable&) {}

}  // namespace agilenn::cuda
