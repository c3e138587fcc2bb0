// The depthwise kernels' twin: plain loops over their per-element functions, and the
// filter gradient follows their reduction plan (chunks, interleaved lanes, lane tree,
// chunks added in order), so it computes the GPU's sums in the GPU's order.
#include <array>
#include <vector>

#include "kernels/shared/depthwise_conv2d.h"

namespace agilenn::kernels {

void depthwise_conv2d_forward_twin(const DepthwiseGeometry& g, const float* x, const float* w, float* y) {
  const int64_t total = g.positions() * g.cout();
  for (int64_t i = 0; i < total; ++i) y[i] = depthwise_forward_at(g, x, w, i);
}

void depthwise_conv2d_backward_input_twin(const DepthwiseGeometry& g, const float* gy, const float* w, float* dx) {
  const int64_t total = g.n * g.h * g.w * g.c;
  for (int64_t i = 0; i < total; ++i) dx[i] = depthwise_input_grad_at(g, gy, w, i);
}

void depthwise_conv2d_backward_filter_twin(const DepthwiseGeometry& g, const float* x, const float* gy, float* dw) {
  const int64_t size = g.filter_size(), taps = g.kh * g.kw, cout = g.cout();
  const int64_t chunks = depthwise_filter_chunks(g);
  std::vector<float> partial(static_cast<size_t>(chunks * size));
  for (int64_t chunk = 0; chunk < chunks; ++chunk) {
    const int64_t begin = depthwise_chunk_begin(g, chunks, chunk), end = depthwise_chunk_begin(g, chunks, chunk + 1);
    for (int64_t tap = 0; tap < taps; ++tap)
      for (int64_t co = 0; co < cout; ++co) {
        std::array<float, kDwLanes> lanes{};
        for (int lane = 0; lane < kDwLanes; ++lane)
          lanes[static_cast<size_t>(lane)] =
              depthwise_filter_grad_partial(g, x, gy, tap, co, begin + lane, end, int64_t{kDwLanes});
        for (int offset = kDwLanes / 2; offset > 0; offset /= 2)
          for (int lane = 0; lane < offset; ++lane)
            lanes[static_cast<size_t>(lane)] += lanes[static_cast<size_t>(lane + offset)];
        partial[static_cast<size_t>(chunk * size + tap * cout + co)] = lanes[0];
      }
  }
  for (int64_t i = 0; i < size; ++i) {
    float acc = 0.0f;
    for (int64_t k = 0; k < chunks; ++k) acc += partial[static_cast<size_t>(k * size + i)];
    dw[i] = acc;
  }
}

}  // namespace agilenn::kernels
