// matmul, and the GEMM wrapper the convolution kernels share.
#include <cblas.h>

#include "kernels/cpu/cpu_kernels.h"

namespace agilenn::cpu {

template <>
void gemm<float>(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                 const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<int>(m),
              static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb), beta,
              c, static_cast<int>(ldc));
}

template <>
void gemm<double>(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
                  const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<int>(m),
              static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb), beta,
              c, static_cast<int>(ldc));
}

void register_matmul(KernelTable& t) {
  t.add("matmul", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    const bool ta = node.attrs.i("transpose_a") != 0, tb = node.attrs.i("transpose_b") != 0;
    const int64_t m = out.dim(0), n = out.dim(1), k = ta ? in[0].dim(0) : in[0].dim(1);
    dispatch_float(out.dtype(), node, [&](auto tag) {
      using T = decltype(tag);
      gemm<T>(ta, tb, m, n, k, T(1), in[0].data<T>(), in[0].dim(1), in[1].data<T>(), in[1].dim(1), T(0),
              out.data<T>(), n);
    });
  });
}

}  // namespace agilenn::cpu
