// matmul, and the GEMM wrapper the convolution kernels share.
#include <cblas.h>

#include <algorithm>

#include "kernels/cpu/cpu_kernels.h"

namespace agilenn::cpu {

namespace {

void blas_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
               const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<int>(m),
              static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb), beta,
              c, static_cast<int>(ldc));
}

void blas_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
               const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<int>(m),
              static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb), beta,
              c, static_cast<int>(ldc));
}

// Below this many multiply-adds a GEMM runs on one thread.
constexpr int64_t kGemmParallelWork = 1 << 18;
// Row blocks of a split GEMM have at least this many rows (unless that leaves fewer
// blocks than threads): each block's call packs B again, which a block must amortise.
constexpr int64_t kGemmMinRows = 64;
// Blocks per thread, at most: more blocks than threads, so that a thread sharing its core
// with another process holds a product up by one block at most.
constexpr int64_t kGemmBlocksPerThread = 4;

}  // namespace

// OpenBLAS runs single-threaded (engine/runtime/threads.cpp sets it: its own thread pool
// would fight ours for the same cores); large products are split by rows of C into
// blocks the engine's threads claim one at a time. The blocks depend on the shape and the
// thread count only, so results do not depend on which thread ran which block.
template <class T>
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda, const T* b, int64_t ldb,
          T beta, T* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  const int64_t threads = threads::count();
  if (threads == 1 || m < 2 * threads || m * n * k < kGemmParallelWork) {
    blas_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  const int64_t blocks = std::clamp(m / kGemmMinRows, threads, threads * kGemmBlocksPerThread);
  threads::parallel_for(m, blocks, [&](int64_t begin, int64_t end) {
    blas_gemm(ta, tb, end - begin, n, k, alpha, ta ? a + begin : a + begin * lda, lda, b, ldb, beta, c + begin * ldc,
              ldc);
  });
}

template void gemm<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t,
                          float, float*, int64_t);
template void gemm<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*, int64_t, const double*,
                           int64_t, double, double*, int64_t);

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
