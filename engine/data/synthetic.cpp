#include "engine/data/synthetic.h"

#include <cmath>
#include <random>

#include "engine/core/error.h"

namespace agilenn::data {

SyntheticDataset::SyntheticDataset(int64_t classes, int64_t height, int64_t width, int64_t channels, int64_t size,
                                   uint64_t seed, double noise)
    : classes_(classes), height_(height), width_(width), channels_(channels), size_(size), seed_(seed), noise_(noise) {
  AGILENN_CHECK(classes > 1 && height > 0 && width > 0 && channels > 0 && size > 0, "bad synthetic dataset geometry");
  patterns_.resize(static_cast<size_t>(classes * height * width * channels));
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  const double two_pi = 2 * std::acos(-1.0);
  for (int64_t k = 0; k < classes; ++k) {
    // Three oriented gratings per channel, with class-specific frequencies and phases.
    for (int64_t c = 0; c < channels; ++c) {
      double fx[3], fy[3], ph[3], amp[3];
      for (int j = 0; j < 3; ++j) {
        fx[j] = (u(rng) * 4 - 2) / static_cast<double>(width);
        fy[j] = (u(rng) * 4 - 2) / static_cast<double>(height);
        ph[j] = u(rng) * two_pi;
        amp[j] = 0.5 + u(rng);
      }
      for (int64_t y = 0; y < height; ++y)
        for (int64_t x = 0; x < width; ++x) {
          double v = 0;
          for (int j = 0; j < 3; ++j)
            v += amp[j] * std::sin(two_pi * (fx[j] * static_cast<double>(x) + fy[j] * static_cast<double>(y)) + ph[j]);
          patterns_[static_cast<size_t>(((k * height + y) * width + x) * channels + c)] = static_cast<float>(v / 3);
        }
    }
  }
}

Batch SyntheticDataset::batch(int64_t first, int64_t count) const {
  Batch b{Tensor::zeros({count, height_, width_, channels_}, DType::f32), Tensor::zeros({count}, DType::i32)};
  float* img = b.images.data<float>();
  int32_t* lab = b.labels.data<int32_t>();
  for (int64_t i = 0; i < count; ++i) {
    const int64_t index = (first + i) % size_;
    std::mt19937_64 rng(seed_ * 0x9e3779b97f4a7c15ULL + static_cast<uint64_t>(index) + 1);
    std::uniform_int_distribution<int64_t> pick(0, classes_ - 1), shift(-2, 2);
    std::uniform_real_distribution<double> contrast(0.7, 1.3);
    std::normal_distribution<double> n(0.0, noise_);
    const int64_t k = pick(rng), dy = shift(rng), dx = shift(rng);
    const double gain = contrast(rng);
    lab[i] = static_cast<int32_t>(k);
    for (int64_t y = 0; y < height_; ++y)
      for (int64_t x = 0; x < width_; ++x) {
        const int64_t sy = (y + dy + height_) % height_, sx = (x + dx + width_) % width_;
        for (int64_t c = 0; c < channels_; ++c) {
          const double v = gain * patterns_[static_cast<size_t>(((k * height_ + sy) * width_ + sx) * channels_ + c)] + n(rng);
          img[((i * height_ + y) * width_ + x) * channels_ + c] = static_cast<float>(v);
        }
      }
  }
  return b;
}

}  // namespace agilenn::data
