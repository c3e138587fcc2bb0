// 8-bit images and their PNG encoding (libpng), for TensorBoard image summaries and the
// figures `agilenn-train evaluate --figures` writes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace agilenn::io {

// Row-major pixels, `channels` bytes each (1: grey, 3: RGB).
struct Image {
  int64_t width = 0, height = 0;
  int channels = 3;
  std::vector<uint8_t> pixels;

  Image() = default;
  Image(int64_t w, int64_t h, int c) : width(w), height(h), channels(c), pixels(static_cast<size_t>(w * h * c), 0) {}
  uint8_t* at(int64_t x, int64_t y) { return pixels.data() + (y * width + x) * channels; }
  const uint8_t* at(int64_t x, int64_t y) const { return pixels.data() + (y * width + x) * channels; }
};

// The PNG file's bytes.
std::vector<uint8_t> encode_png(const Image& image);

// Writes encode_png(image) to `path` (through a temporary sibling, renamed at the end).
void write_png(const std::string& path, const Image& image);

}  // namespace agilenn::io
