#include "engine/train/figures.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "engine/core/error.h"

namespace agilenn::train {
namespace {

// Black through red and yellow to white as t goes from 0 to 1 (the "hot" ramp).
void hot(double t, uint8_t* rgb) {
  t = std::clamp(std::isfinite(t) ? t : 0.0, 0.0, 1.0);
  for (int c = 0; c < 3; ++c) rgb[c] = static_cast<uint8_t>(std::lround(255.0 * std::clamp(3.0 * t - c, 0.0, 1.0)));
}

constexpr uint8_t kLocalColour[3] = {230, 120, 30}, kRemoteColour[3] = {60, 110, 200};

}  // namespace

io::Image image_of(const data::ImageDataset& ds, int64_t i) {
  AGILENN_CHECK(i >= 0 && i < ds.size(), "figures: no image " << i << " in '" << ds.name << "'");
  io::Image img(ds.width, ds.height, static_cast<int>(ds.channels));
  std::copy(ds.image(i), ds.image(i) + ds.image_bytes(), img.pixels.begin());
  return img;
}

std::pair<io::Image, io::Image> importance_heatmaps(const Tensor& attribution, int64_t s, int64_t k, int64_t width,
                                                    int64_t height) {
  AGILENN_CHECK(attribution.rank() == 4 && s < attribution.dim(0) && k <= attribution.dim(3),
                "figures: attribution " << shape_str(attribution.shape()) << ", sample " << s << ", " << k
                                        << " local channels");
  const int64_t h = attribution.dim(1), w = attribution.dim(2), c = attribution.dim(3);
  std::vector<double> local(static_cast<size_t>(h * w), 0.0), remote(local.size(), 0.0);
  for (int64_t p = 0; p < h * w; ++p)
    for (int64_t ch = 0; ch < c; ++ch)
      (ch < k ? local : remote)[static_cast<size_t>(p)] += attribution.item((s * h * w + p) * c + ch);
  double top = 0;
  for (double v : local) top = std::max(top, v);
  for (double v : remote) top = std::max(top, v);
  auto paint = [&](const std::vector<double>& map) {
    io::Image img(width, height, 3);
    for (int64_t y = 0; y < height; ++y)
      for (int64_t x = 0; x < width; ++x)
        hot(top > 0 ? map[static_cast<size_t>(y * h / height * w + x * w / width)] / top : 0.0, img.at(x, y));
    return img;
  };
  return {paint(local), paint(remote)};
}

io::Image channel_chart(const std::vector<double>& importance, int64_t k) {
  constexpr int64_t kBar = 8, kGap = 2, kHeight = 64, kMargin = 4;
  const int64_t n = static_cast<int64_t>(importance.size());
  io::Image img(std::max<int64_t>(1, n * (kBar + kGap) + kGap), kHeight + 2 * kMargin, 3);
  std::fill(img.pixels.begin(), img.pixels.end(), uint8_t{255});
  const double top = n > 0 ? *std::max_element(importance.begin(), importance.end()) : 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double v = importance[static_cast<size_t>(i)];
    const double share = top > 0 && std::isfinite(v) ? v / top : 0.0;
    const int64_t bar = std::lround(std::clamp(share, 0.0, 1.0) * kHeight);
    const uint8_t* colour = i < k ? kLocalColour : kRemoteColour;
    for (int64_t y = kMargin + kHeight - bar; y < kMargin + kHeight; ++y)
      for (int64_t x = kGap + i * (kBar + kGap); x < kGap + i * (kBar + kGap) + kBar; ++x)
        std::copy(colour, colour + 3, img.at(x, y));
  }
  return img;
}

void EvaluationFigures::write(io::EventWriter& events, int64_t step) const {
  for (const SampleFigure& f : samples) {
    const std::string tag = "samples/" + std::to_string(f.index) + "_label_" + std::to_string(f.label);
    const std::string caption = "test image " + std::to_string(f.index) + ": true " + std::to_string(f.label) +
                                ", predicted " + std::to_string(f.predicted);
    events.image(tag + "/input", f.input, step, caption);
    events.image(tag + "/local_importance", f.local, step,
                 caption + "; importance summed over the " + std::to_string(local_channels) + " local channels");
    events.image(tag + "/remote_importance", f.remote, step,
                 caption + "; importance summed over the remote channels (same scale)");
  }
  if (!channel_importance.empty()) {
    events.image("importance/channels", channel_chart(channel_importance, local_channels), step,
                 "mean share of each channel in a sample's importance; the first " + std::to_string(local_channels) +
                     " (orange) stay on the device");
    events.histogram("importance/channel_shares", io::Histogram::of_counts(channel_importance), step);
  }
  if (!skewness.empty()) events.histogram("test/skewness", io::Histogram::of(skewness, 30), step);
  if (!code_counts.empty()) events.histogram("quantizer/codes", io::Histogram::of_counts(code_counts), step);
  for (size_t j = 0; j < centroids.size(); ++j) events.scalar("quantizer/centroid_" + std::to_string(j), centroids[j], step);
}

void EvaluationFigures::write_png(const std::string& dir) const {
  std::filesystem::create_directories(dir);
  const std::filesystem::path d(dir);
  for (const SampleFigure& f : samples) {
    const std::string base = "sample_" + std::to_string(f.index) + "_label_" + std::to_string(f.label) + "_pred_" +
                             std::to_string(f.predicted);
    io::write_png((d / (base + "_input.png")).string(), f.input);
    io::write_png((d / (base + "_local_importance.png")).string(), f.local);
    io::write_png((d / (base + "_remote_importance.png")).string(), f.remote);
  }
  if (!channel_importance.empty())
    io::write_png((d / "channel_importance.png").string(), channel_chart(channel_importance, local_channels));
}

}  // namespace agilenn::train
