// What an evaluation shows of where the importance sits: for a fixed set of test images the
// image and its per-position importance over the local and the remote channels, the mean
// importance per channel, and the distributions of per-sample skewness and of the quantizer's
// codes. agilenn-train writes them to TensorBoard at every evaluation, and
// `agilenn-train evaluate --figures DIR` as PNG files.
#pragma once

#include <string>
#include <vector>

#include "engine/core/tensor.h"
#include "engine/data/dataset.h"
#include "engine/io/png.h"
#include "engine/io/tensorboard.h"

namespace agilenn::train {

struct SampleFigure {
  int64_t index = 0;  // in the test split
  int32_t label = 0, predicted = 0;
  io::Image input, local, remote;
};

struct EvaluationFigures {
  int64_t local_channels = 0;
  std::vector<SampleFigure> samples;
  std::vector<double> channel_importance;  // per channel: its share of a sample's importance, averaged
  std::vector<double> skewness;            // per test sample
  std::vector<double> code_counts;         // per centroid: how many remote elements took it
  std::vector<double> centroids;           // the centroids' values

  // As TensorBoard summaries at `step` (tags in README.md, "What TensorBoard shows").
  void write(io::EventWriter& events, int64_t step) const;
  // The pictures as PNG files in `dir` (created if needed).
  void write_png(const std::string& dir) const;
};

// The test image as stored (grey or RGB).
io::Image image_of(const data::ImageDataset& ds, int64_t i);

// Heatmaps of sample `s` of an attribution map [B, h, w, C] (host): the importance at each
// position summed over the local channels [0, k), and over the remote ones, resized to
// width × height (nearest: the test image's size), on one colour scale from 0 to the larger
// of the two maxima so that the two pictures compare.
std::pair<io::Image, io::Image> importance_heatmaps(const Tensor& attribution, int64_t s, int64_t k, int64_t width,
                                                    int64_t height);

// A bar per channel (height: its importance relative to the largest), the k local ones in
// one colour and the remote ones in another.
io::Image channel_chart(const std::vector<double>& importance, int64_t k);

}  // namespace agilenn::train
