// softmax_cross_entropy: the fused classifier loss; its reference decomposition is
// cross_entropy_reference in engine/ir/ops.cpp, its per-element math
// kernels/shared/cross_entropy.h.
#include <limits>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/shared/cross_entropy.h"

namespace agilenn::cpu {

void register_cross_entropy(KernelTable& t) {
  t.add("softmax_cross_entropy", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    dispatch_float(out.dtype(), node, [&](auto tag) {
      using T = decltype(tag);
      const int64_t rows = in[0].dim(0), c = in[0].dim(1);
      const T* x = in[0].data<T>();
      const int32_t* labels = in[1].data<int32_t>();
      T* y = out.data<T>();
      for (int64_t r = 0; r < rows; ++r)  // before the parallel loop, which must not throw
        AGILENN_CHECK(kernels::ce_label_ok(labels[r], c), index_fault_message(node.op_name(), labels[r], r, c));
      parallel_for(rows, rows * c, [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {
          const T* row = x + r * c;
          T m = -std::numeric_limits<T>::infinity();
          for (int64_t j = 0; j < c; ++j) m = kernels::ce_max(m, row[j]);
          T s = 0;
          for (int64_t j = 0; j < c; ++j) s += kernels::ce_exp_term(row[j], m);
          y[r] = kernels::ce_loss(row[labels[r]], m, s);
        }
      });
    });
  });
}

}  // namespace agilenn::cpu
