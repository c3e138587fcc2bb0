// TensorBoard summaries (scalars, PNG images, histograms) written as a TFRecord event file,
// with the few protobuf messages encoded by hand so the engine needs no protobuf library.
// `tensorboard --logdir DIR` reads them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace agilenn::io {

struct Image;

// A histogram as TensorBoard stores it: bucket i holds counts[i] values in
// (limits[i-1], limits[i]] (the first from min).
struct Histogram {
  double min = 0, max = 0, num = 0, sum = 0, sum_squares = 0;
  std::vector<double> limits, counts;

  // The finite `values` in `buckets` equal-width buckets over [min, max] of them (NaN and
  // infinities are left out: a histogram has no place for them).
  static Histogram of(const std::vector<double>& values, int buckets);
  // counts[i] values equal to i (i = 0, 1, ...): a bucket per integer, e.g. how often each
  // quantizer code occurs.
  static Histogram of_counts(const std::vector<double>& counts);
};

// CRC-32C (Castagnoli), the checksum TFRecord framing uses; crc32c("123456789") == 0xE3069283.
uint32_t crc32c(const uint8_t* data, size_t n);

// Appends scalar events to DIR/events.out.tfevents.<unix seconds>.<hostname> (a numeric suffix is
// added when that name is already taken, so two writers started in the same second never clobber
// each other). Not thread-safe: give each thread its own writer or serialise the calls.
class EventWriter {
 public:
  // Creates DIR if needed and writes the file_version record, flushed so TensorBoard sees the run at once.
  explicit EventWriter(const std::string& dir);
  ~EventWriter();
  EventWriter(const EventWriter&) = delete;
  EventWriter& operator=(const EventWriter&) = delete;

  // TensorBoard stores scalars as float32, so `value` is rounded to float precision.
  void scalar(const std::string& tag, double value, int64_t step);
  // A PNG-encoded image; `description` (may be empty) is shown beside it.
  void image(const std::string& tag, const Image& image, int64_t step, const std::string& description = "");
  void histogram(const std::string& tag, const Histogram& histogram, int64_t step);
  void flush();
  const std::string& path() const { return path_; }

 private:
  void write_record(const std::vector<uint8_t>& data);
  void write_value(const std::vector<uint8_t>& summary_value, int64_t step);

  std::string path_;
  std::FILE* file_ = nullptr;
};

}  // namespace agilenn::io
