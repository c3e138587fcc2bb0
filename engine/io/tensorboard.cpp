#include "engine/io/tensorboard.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "engine/core/error.h"
#include "engine/io/png.h"

namespace agilenn::io {

namespace {

constexpr std::array<uint32_t, 256> make_crc32c_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1U) ? (c >> 1) ^ 0x82F63B78U : c >> 1;
    table[i] = c;
  }
  return table;
}

constexpr std::array<uint32_t, 256> kCrc32cTable = make_crc32c_table();

// TFRecord stores a rotated, offset CRC: a plain CRC of data that itself embeds CRCs is weak.
uint32_t masked_crc(const uint8_t* data, size_t n) {
  const uint32_t crc = crc32c(data, n);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8U;
}

// The file format is little-endian regardless of the host, so bytes are laid out explicitly.
void put_le(std::vector<uint8_t>& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

void put_varint(std::vector<uint8_t>& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<uint8_t>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<uint8_t>(v));
}

enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

void put_key(std::vector<uint8_t>& out, uint32_t field, WireType type) { put_varint(out, (field << 3) | type); }

void put_bytes(std::vector<uint8_t>& out, uint32_t field, const uint8_t* data, size_t n) {
  put_key(out, field, kLengthDelimited);
  put_varint(out, n);
  out.insert(out.end(), data, data + n);
}

void put_bytes(std::vector<uint8_t>& out, uint32_t field, const std::string& s) {
  put_bytes(out, field, reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

void put_bytes(std::vector<uint8_t>& out, uint32_t field, const std::vector<uint8_t>& v) {
  put_bytes(out, field, v.data(), v.size());
}

// Fields shared by every Event: wall_time (1) and step (2).
std::vector<uint8_t> event_header(int64_t step) {
  const double wall = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  std::vector<uint8_t> ev;
  put_key(ev, 1, kFixed64);
  put_le(ev, std::bit_cast<uint64_t>(wall), 8);
  // int64 varints carry negative values as their 64-bit two's complement.
  put_key(ev, 2, kVarint);
  put_varint(ev, static_cast<uint64_t>(step));
  return ev;
}

std::string host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0') return "localhost";
  std::string name(buf);
  // A separator in the name would put the file outside DIR.
  for (char& c : name)
    if (c == '/' || c == '\\') c = '_';
  return name;
}

// Summary.Value's tag (1), checked non-empty.
std::vector<uint8_t> tagged(const std::string& tag, const std::string& path) {
  AGILENN_CHECK(!tag.empty(), "tensorboard: empty tag for '" << path << "'");
  std::vector<uint8_t> v;
  put_bytes(v, 1, tag);
  return v;
}

void put_double(std::vector<uint8_t>& out, uint32_t field, double v) {
  put_key(out, field, kFixed64);
  put_le(out, std::bit_cast<uint64_t>(v), 8);
}

void put_packed_doubles(std::vector<uint8_t>& out, uint32_t field, const std::vector<double>& v) {
  std::vector<uint8_t> packed;
  for (double d : v) put_le(packed, std::bit_cast<uint64_t>(d), 8);
  put_bytes(out, field, packed);
}

}  // namespace

uint32_t crc32c(const uint8_t* data, size_t n) {
  uint32_t c = 0xFFFFFFFFU;
  for (size_t i = 0; i < n; ++i) c = kCrc32cTable[(c ^ data[i]) & 0xFFU] ^ (c >> 8);
  return c ^ 0xFFFFFFFFU;
}

EventWriter::EventWriter(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  AGILENN_CHECK(!ec, "tensorboard: cannot create log directory '" << dir << "': " << ec.message());
  const auto seconds =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  const std::string base =
      (std::filesystem::path(dir) / ("events.out.tfevents." + std::to_string(seconds) + "." + host_name())).string();
  // "x" creates exclusively, so a second writer in the same second and directory takes the next suffix
  // instead of truncating the first one's file.
  for (int attempt = 0; attempt < 1000 && !file_; ++attempt) {
    path_ = attempt == 0 ? base : base + "." + std::to_string(attempt);
    file_ = std::fopen(path_.c_str(), "wbx");
    if (!file_ && errno != EEXIST) break;
  }
  AGILENN_CHECK(file_, "tensorboard: cannot create event file '" << path_ << "': " << std::strerror(errno));

  std::vector<uint8_t> ev = event_header(0);
  put_bytes(ev, 3, std::string("brain.Event:2"));
  try {
    write_record(ev);
    flush();
  } catch (...) {
    std::fclose(file_);
    throw;
  }
}

EventWriter::~EventWriter() {
  // Destructors must not throw; a failure here has no one to report to, and flush() reports it when called.
  std::fflush(file_);
  std::fclose(file_);
}

Histogram Histogram::of(const std::vector<double>& values, int buckets) {
  AGILENN_CHECK(buckets > 0, "histogram: " << buckets << " buckets");
  Histogram h;
  std::vector<double> finite;
  for (double v : values)
    if (std::isfinite(v)) finite.push_back(v);
  if (finite.empty()) return h;
  h.min = h.max = finite[0];
  for (double v : finite) {
    h.min = std::min(h.min, v), h.max = std::max(h.max, v);
    h.num += 1, h.sum += v, h.sum_squares += v * v;
  }
  const double width = h.max > h.min && std::isfinite(h.max - h.min) ? (h.max - h.min) / buckets : 1.0;
  h.counts.assign(static_cast<size_t>(buckets), 0.0);
  for (int i = 0; i < buckets; ++i) h.limits.push_back(h.min + width * (i + 1));
  for (double v : finite)
    h.counts[static_cast<size_t>(std::clamp((v - h.min) / width, 0.0, buckets - 1.0))] += 1;
  return h;
}

Histogram Histogram::of_counts(const std::vector<double>& counts) {
  Histogram h;
  h.counts = counts;
  bool any = false;
  for (size_t i = 0; i < counts.size(); ++i) {
    h.limits.push_back(static_cast<double>(i) + 0.5);
    if (counts[i] <= 0) continue;
    const double v = static_cast<double>(i);
    h.min = any ? std::min(h.min, v) : v;
    h.max = any ? std::max(h.max, v) : v;
    any = true;
    h.num += counts[i], h.sum += counts[i] * v, h.sum_squares += counts[i] * v * v;
  }
  return h;
}

void EventWriter::scalar(const std::string& tag, double value, int64_t step) {
  std::vector<uint8_t> v = tagged(tag, path_);
  put_key(v, 2, kFixed32);
  put_le(v, std::bit_cast<uint32_t>(static_cast<float>(value)), 4);
  write_value(v, step);
}

void EventWriter::image(const std::string& tag, const Image& image, int64_t step, const std::string& description) {
  std::vector<uint8_t> img;
  put_key(img, 1, kVarint);
  put_varint(img, static_cast<uint64_t>(image.height));
  put_key(img, 2, kVarint);
  put_varint(img, static_cast<uint64_t>(image.width));
  put_key(img, 3, kVarint);
  put_varint(img, static_cast<uint64_t>(image.channels));
  put_bytes(img, 4, encode_png(image));
  // SummaryMetadata: plugin_data (1) naming the images plugin (TensorBoard asks that of
  // any value with metadata), summary_description (3).
  std::vector<uint8_t> plugin, metadata;
  put_bytes(plugin, 1, std::string("images"));
  put_bytes(metadata, 1, plugin);
  if (!description.empty()) put_bytes(metadata, 3, description);
  std::vector<uint8_t> v = tagged(tag, path_);
  put_bytes(v, 9, metadata);
  put_bytes(v, 4, img);
  write_value(v, step);
}

void EventWriter::histogram(const std::string& tag, const Histogram& h, int64_t step) {
  AGILENN_CHECK(h.limits.size() == h.counts.size(),
                "tensorboard: histogram '" << tag << "' has " << h.limits.size() << " limits and " << h.counts.size()
                                           << " counts");
  std::vector<uint8_t> histo;
  put_double(histo, 1, h.min);
  put_double(histo, 2, h.max);
  put_double(histo, 3, h.num);
  put_double(histo, 4, h.sum);
  put_double(histo, 5, h.sum_squares);
  put_packed_doubles(histo, 6, h.limits);
  put_packed_doubles(histo, 7, h.counts);
  std::vector<uint8_t> v = tagged(tag, path_);
  put_bytes(v, 5, histo);
  write_value(v, step);
}

void EventWriter::write_value(const std::vector<uint8_t>& summary_value, int64_t step) {
  std::vector<uint8_t> summary;
  put_bytes(summary, 1, summary_value);
  std::vector<uint8_t> ev = event_header(step);
  put_bytes(ev, 5, summary);
  write_record(ev);
}

void EventWriter::flush() {
  AGILENN_CHECK(std::fflush(file_) == 0, "tensorboard: cannot flush '" << path_ << "': " << std::strerror(errno));
}

void EventWriter::write_record(const std::vector<uint8_t>& data) {
  std::vector<uint8_t> rec;
  rec.reserve(data.size() + 16);
  put_le(rec, data.size(), 8);
  put_le(rec, masked_crc(rec.data(), 8), 4);
  rec.insert(rec.end(), data.begin(), data.end());
  put_le(rec, masked_crc(data.data(), data.size()), 4);
  AGILENN_CHECK(std::fwrite(rec.data(), 1, rec.size(), file_) == rec.size(),
                "tensorboard: cannot write to '" << path_ << "': " << std::strerror(errno));
}

}  // namespace agilenn::io
