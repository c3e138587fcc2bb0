// matmul through cuBLAS: C[m,n] = op(A) · op(B) on row-major 2-D tensors, where op
// transposes when the node's transpose_a / transpose_b attribute is set (the shape rule
// allows no batching). cuBLAS is column-major: a row-major matrix read column-major is
// its transpose, so the row-major product C = op(A)·op(B) is the column-major product
// Cᵀ = op(B)ᵀ · op(A)ᵀ with the operands swapped and the same transpose flags.
#include <climits>
#include <string>

#include "kernels/cuda/cuda_kernels.h"

namespace agilenn::cuda {
namespace {

// ---- host launcher

int as_cublas_int(int64_t v, const char* what, const std::string& op) {
  AGILENN_CHECK(v >= 0 && v <= INT_MAX, "op '" << op << "': " << what << " " << v << " exceeds cuBLAS's int range");
  return static_cast<int>(v);
}

// Row-major c[m,n] = op(a)·op(b), op(a) [m,k] and op(b) [k,n]; lda / ldb are the row
// lengths of a and b as stored (a is [m,k], or [k,m] when ta).
void gemm_f32(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
              int64_t ldb, float* c, const std::string& op) {
  if (m == 0 || n == 0) return;
  if (k == 0) {  // an empty sum: zeros (cuBLAS rejects leading dimension 0)
    AGILENN_CUDA_CHECK(cudaMemsetAsync(c, 0, static_cast<size_t>(m * n) * sizeof(float), stream()));
    return;
  }
  const float alpha = 1.0f, beta = 0.0f;
  const cublasComputeType_t compute = tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  // Column-major Cᵀ [n,m] = op(B)ᵀ [n,k] · op(A)ᵀ [k,m]; ldc = n.
  AGILENN_CUBLAS_CHECK(cublasGemmEx(cublas(), tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                                    as_cublas_int(n, "n", op), as_cublas_int(m, "m", op), as_cublas_int(k, "k", op),
                                    &alpha, b, CUDA_R_32F, as_cublas_int(ldb, "ldb", op), a, CUDA_R_32F,
                                    as_cublas_int(lda, "lda", op), &beta, c, CUDA_R_32F, as_cublas_int(n, "ldc", op),
                                    compute, CUBLAS_GEMM_DEFAULT));
}

}  // namespace

// ---- registration

void register_matmul(KernelTable& table) {
  table.add("matmul", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    dispatch_f32(out.dtype(), node, [&](float) {
      const bool ta = node.attrs.i("transpose_a") != 0, tb = node.attrs.i("transpose_b") != 0;
      const int64_t m = out.dim(0), n = out.dim(1), k = ta ? in[0].dim(0) : in[0].dim(1);
      gemm_f32(ta, tb, m, n, k, in[0].data<float>(), in[0].dim(1), in[1].data<float>(), in[1].dim(1),
               out.data<float>(), node.op_name());
    });
  });
}

}  // namespace agilenn::cuda
