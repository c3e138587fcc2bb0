// A deterministic synthetic image-classification problem for tests and demos: each class
// is a smooth random pattern; a sample is its class pattern with random contrast, a
// random shift and pixel noise. Sample i is a pure function of (seed, i).
#pragma once

#include <cstdint>
#include <vector>

#include "engine/core/tensor.h"

namespace agilenn::data {

struct Batch {
  Tensor images;  // [B,H,W,C] float32
  Tensor labels;  // [B] int32
};

class SyntheticDataset {
 public:
  SyntheticDataset(int64_t classes, int64_t height, int64_t width, int64_t channels, int64_t size, uint64_t seed,
                   double noise = 0.3);

  int64_t size() const { return size_; }
  int64_t classes() const { return classes_; }
  // Samples [first, first + count) modulo size.
  Batch batch(int64_t first, int64_t count) const;

 private:
  int64_t classes_, height_, width_, channels_, size_;
  uint64_t seed_;
  double noise_;
  std::vector<float> patterns_;  // [classes, H, W, C]
};

}  // namespace agilenn::data
