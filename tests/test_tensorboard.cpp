// The TensorBoard event writer, read back by a deliberately separate parser: bitwise CRC-32C
// instead of the table, and a generic protobuf wire decoder, so a shared mistake cannot cancel out.
#include <unistd.h>

#include <gtest/gtest.h>

#include <bit>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "engine/core/error.h"
#include "engine/io/png.h"
#include "engine/io/tensorboard.h"
#include "engine/train/figures.h"
#include "tests/test_util.h"

namespace agilenn {
namespace {

namespace fs = std::filesystem;

uint32_t crc32c_bitwise(const uint8_t* p, size_t n) {
  uint32_t c = ~0U;
  for (size_t i = 0; i < n; ++i) {
    c ^= p[i];
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0x82F63B78U & (0U - (c & 1U)));
  }
  return ~c;
}

uint32_t unmask(uint32_t masked) {
  const uint32_t rot = masked - 0xa282ead8U;
  return (rot >> 17) | (rot << 15);
}

uint64_t read_le(const uint8_t* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// Splits a TFRecord file into its payloads; a CRC mismatch or a short record is an error.
std::vector<std::vector<uint8_t>> read_records(const std::vector<uint8_t>& file) {
  std::vector<std::vector<uint8_t>> out;
  size_t pos = 0;
  while (pos < file.size()) {
    if (file.size() - pos < 12) throw std::runtime_error("truncated record header");
    const uint8_t* h = file.data() + pos;
    if (unmask(static_cast<uint32_t>(read_le(h + 8, 4))) != crc32c_bitwise(h, 8))
      throw std::runtime_error("length crc mismatch");
    const uint64_t len = read_le(h, 8);
    pos += 12;
    if (file.size() - pos < len + 4) throw std::runtime_error("truncated record data");
    const uint8_t* d = file.data() + pos;
    if (unmask(static_cast<uint32_t>(read_le(d + len, 4))) != crc32c_bitwise(d, len))
      throw std::runtime_error("data crc mismatch");
    out.emplace_back(d, d + len);
    pos += len + 4;
  }
  return out;
}

struct Field {
  uint32_t wire = 0;
  uint64_t number = 0;        // varint, fixed64 and fixed32 payloads
  std::vector<uint8_t> bytes;  // length-delimited payloads
};

uint64_t read_varint(const std::vector<uint8_t>& m, size_t& pos) {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (pos >= m.size()) throw std::runtime_error("truncated varint");
    const uint8_t b = m[pos++];
    v |= uint64_t{b & 0x7FU} << shift;
    if (!(b & 0x80)) return v;
  }
  throw std::runtime_error("varint too long");
}

std::multimap<uint32_t, Field> decode(const std::vector<uint8_t>& m) {
  std::multimap<uint32_t, Field> fields;
  size_t pos = 0;
  while (pos < m.size()) {
    const uint64_t key = read_varint(m, pos);
    Field f;
    f.wire = static_cast<uint32_t>(key & 7);
    auto take = [&](size_t n) {
      if (m.size() - pos < n) throw std::runtime_error("truncated field");
      pos += n;
      return m.data() + pos - n;
    };
    switch (f.wire) {
      case 0: f.number = read_varint(m, pos); break;
      case 1: f.number = read_le(take(8), 8); break;
      case 5: f.number = read_le(take(4), 4); break;
      case 2: {
        const size_t n = read_varint(m, pos);
        const uint8_t* p = take(n);
        f.bytes.assign(p, p + n);
        break;
      }
      default: throw std::runtime_error("unexpected wire type " + std::to_string(f.wire));
    }
    fields.emplace(static_cast<uint32_t>(key >> 3), std::move(f));
  }
  return fields;
}

const Field& only(const std::multimap<uint32_t, Field>& fields, uint32_t number, uint32_t wire) {
  EXPECT_EQ(fields.count(number), 1U) << "field " << number;
  const auto it = fields.find(number);
  if (it == fields.end()) throw std::runtime_error("missing field " + std::to_string(number));
  EXPECT_EQ(it->second.wire, wire) << "field " << number;
  return it->second;
}

struct Event {
  double wall_time = 0;
  int64_t step = 0;
  std::optional<std::string> file_version;
  std::vector<std::pair<std::string, float>> values;
};

Event parse_event(const std::vector<uint8_t>& data) {
  const auto f = decode(data);
  Event e;
  e.wall_time = std::bit_cast<double>(only(f, 1, 1).number);
  e.step = static_cast<int64_t>(only(f, 2, 0).number);
  if (f.count(3)) {
    const auto& b = only(f, 3, 2).bytes;
    e.file_version = std::string(b.begin(), b.end());
  }
  if (f.count(5)) {
    for (const auto& [num, v] : decode(only(f, 5, 2).bytes)) {
      EXPECT_EQ(num, 1U);
      EXPECT_EQ(v.wire, 2U);
      const auto vf = decode(v.bytes);
      const auto& tag = only(vf, 1, 2).bytes;
      e.values.emplace_back(std::string(tag.begin(), tag.end()),
                            std::bit_cast<float>(static_cast<uint32_t>(only(vf, 2, 5).number)));
    }
  }
  return e;
}

std::vector<uint8_t> slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in) << path;
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// A fresh directory per test, removed afterwards, so reruns and parallel ctest runs do not collide.
class TensorBoardWriter : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("agilenn_tb_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST(TensorBoardCrc, MatchesTheCheckValueAndABitwiseReference) {
  const std::string check = "123456789";
  EXPECT_EQ(io::crc32c(reinterpret_cast<const uint8_t*>(check.data()), check.size()), 0xE3069283U);
  EXPECT_EQ(io::crc32c(nullptr, 0), 0U);
  std::mt19937 rng(3);
  std::vector<uint8_t> bytes(1000);
  for (auto& b : bytes) b = static_cast<uint8_t>(rng());
  for (size_t n : {1U, 7U, 64U, 1000U})
    EXPECT_EQ(io::crc32c(bytes.data(), n), crc32c_bitwise(bytes.data(), n)) << n << " bytes";
}

TEST_F(TensorBoardWriter, ScalarsReadBackThroughAnIndependentParser) {
  const auto before = std::chrono::system_clock::now();
  std::string path;
  {
    io::EventWriter w(dir_.string());
    path = w.path();
    w.scalar("loss", 2.5, 0);
    w.scalar("loss", 0.1, 1);  // not representable: compared at float precision
    w.scalar("eval/accuracy", 0.875, 1);
    w.scalar("lr", -3e-4, 1LL << 40);
    w.scalar("loss", 1e30, -5);
  }  // the destructor flushes
  const double lo = std::chrono::duration<double>(before.time_since_epoch()).count() - 1;
  const double hi = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count() + 1;

  EXPECT_EQ(fs::path(path).parent_path(), dir_);
  EXPECT_EQ(fs::path(path).filename().string().rfind("events.out.tfevents.", 0), 0U) << path;

  const auto records = read_records(slurp(path));
  ASSERT_EQ(records.size(), 6U);
  const Event first = parse_event(records[0]);
  EXPECT_EQ(first.file_version, "brain.Event:2");
  EXPECT_TRUE(first.values.empty());

  const std::vector<std::tuple<std::string, float, int64_t>> want = {
      {"loss", 2.5F, 0}, {"loss", 0.1F, 1}, {"eval/accuracy", 0.875F, 1}, {"lr", -3e-4F, 1LL << 40}, {"loss", 1e30F, -5}};
  for (size_t i = 0; i < want.size(); ++i) {
    const Event e = parse_event(records[i + 1]);
    EXPECT_FALSE(e.file_version) << "record " << i + 1;
    EXPECT_EQ(e.step, std::get<2>(want[i]));
    ASSERT_EQ(e.values.size(), 1U);
    EXPECT_EQ(e.values[0].first, std::get<0>(want[i]));
    EXPECT_EQ(e.values[0].second, std::get<1>(want[i]));
    EXPECT_GE(e.wall_time, lo);
    EXPECT_LE(e.wall_time, hi);
  }
}

TEST_F(TensorBoardWriter, FlushMakesRecordsVisibleWhileTheWriterIsOpen) {
  io::EventWriter w(dir_.string());
  EXPECT_EQ(read_records(slurp(w.path())).size(), 1U);  // the version record is there from the start
  w.scalar("loss", 1.0, 3);
  w.flush();
  const auto records = read_records(slurp(w.path()));
  ASSERT_EQ(records.size(), 2U);
  EXPECT_EQ(parse_event(records[1]).step, 3);
}

TEST_F(TensorBoardWriter, ACorruptedByteFailsTheCrcCheck) {
  std::string path;
  {
    io::EventWriter w(dir_.string());
    path = w.path();
    w.scalar("loss", 0.5, 7);
  }
  const std::vector<uint8_t> good = slurp(path);
  ASSERT_EQ(read_records(good).size(), 2U);
  const size_t second = 12 + read_le(good.data(), 8) + 4;

  std::vector<uint8_t> bad = good;
  bad[second + 12 + 3] ^= 0x10;  // inside the second record's payload
  try {
    read_records(bad);
    ADD_FAILURE() << "a flipped payload bit went unnoticed";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "data crc mismatch");
  }

  bad = good;
  bad[second] ^= 0x01;  // the second record's length
  try {
    read_records(bad);
    ADD_FAILURE() << "a flipped length bit went unnoticed";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "length crc mismatch");
  }
}

TEST_F(TensorBoardWriter, TwoWritersInOneDirectoryKeepSeparateFiles) {
  io::EventWriter a(dir_.string());
  io::EventWriter b(dir_.string());
  EXPECT_NE(a.path(), b.path());
  a.scalar("a", 1.0, 1);
  b.scalar("b", 2.0, 2);
  a.flush();
  b.flush();
  const auto ra = read_records(slurp(a.path()));
  const auto rb = read_records(slurp(b.path()));
  ASSERT_EQ(ra.size(), 2U);
  ASSERT_EQ(rb.size(), 2U);
  EXPECT_EQ(parse_event(ra[1]).values.at(0).first, "a");
  EXPECT_EQ(parse_event(rb[1]).values.at(0).first, "b");
}

TEST_F(TensorBoardWriter, AnUncreatableDirectoryThrowsNamingIt) {
  fs::create_directories(dir_);
  const fs::path blocker = dir_ / "file";
  std::ofstream(blocker) << "not a directory";
  const std::string bad = (blocker / "logs").string();
  try {
    io::EventWriter w(bad);
    ADD_FAILURE() << "no error for " << bad;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace agilenn

namespace agilenn {
namespace {

// ---- histograms, PNG images and the evaluation's pictures (engine/train/figures.h)

TEST(TensorBoardHistogram, SummarisesValuesIntoEqualBuckets) {
  const io::Histogram h = io::Histogram::of({1, 2, 2, 3, 5}, 4);
  EXPECT_EQ(h.min, 1);
  EXPECT_EQ(h.max, 5);
  EXPECT_EQ(h.num, 5);
  EXPECT_EQ(h.sum, 13);
  EXPECT_EQ(h.sum_squares, 43);
  EXPECT_EQ(h.limits, (std::vector<double>{2, 3, 4, 5}));
  EXPECT_EQ(h.counts, (std::vector<double>{1, 2, 1, 1}));  // [1,2) [2,3) [3,4) [4,5]
  const io::Histogram one = io::Histogram::of({0.25, 0.25}, 3);
  EXPECT_EQ(one.num, 2);
  EXPECT_EQ(one.counts, (std::vector<double>{2, 0, 0}));
}

TEST(TensorBoardHistogram, CountsPerIntegerValue) {
  // Codes 0..3 taken 0, 4, 1 and 2 times.
  const io::Histogram h = io::Histogram::of_counts({0, 4, 1, 2});
  EXPECT_EQ(h.min, 1);
  EXPECT_EQ(h.max, 3);
  EXPECT_EQ(h.num, 7);
  EXPECT_EQ(h.sum, 4 * 1 + 1 * 2 + 2 * 3);
  EXPECT_EQ(h.sum_squares, 4 * 1 + 1 * 4 + 2 * 9);
  EXPECT_EQ(h.limits, (std::vector<double>{0.5, 1.5, 2.5, 3.5}));
}

// An RGB and a grey image through encode_png, decoded by Pillow: every pixel back.
TEST(Png, PillowDecodesEveryPixel) {
  if (!testing::have_python("PIL")) GTEST_SKIP() << "python3 with Pillow is not installed (tools/setup.sh installs it)";
  const fs::path dir = fs::temp_directory_path() / ("agilenn-png-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::mt19937 rng(5);
  for (int channels : {3, 1}) {
    io::Image img(7, 5, channels);
    for (uint8_t& p : img.pixels) p = static_cast<uint8_t>(rng());
    const fs::path file = dir / ("x" + std::to_string(channels) + ".png");
    io::write_png(file.string(), img);
    const fs::path dump = dir / "dump.txt";
    const std::string cmd = "python3 -c \"from PIL import Image; im = Image.open('" + file.string() +
                            "'); print(im.mode, im.size[0], im.size[1], *im.tobytes())\" > " + dump.string();
    ASSERT_EQ(std::system(cmd.c_str()), 0);
    std::ifstream in(dump);
    std::string mode;
    int64_t w = 0, h = 0;
    in >> mode >> w >> h;
    EXPECT_EQ(mode, channels == 3 ? "RGB" : "L");
    EXPECT_EQ(w, 7);
    EXPECT_EQ(h, 5);
    std::vector<uint8_t> back;
    for (int v; in >> v;) back.push_back(static_cast<uint8_t>(v));
    EXPECT_EQ(back, img.pixels) << channels << " channels";
  }
  fs::remove_all(dir);
}

TEST(Png, ABadImageIsRefused) {
  io::Image img(4, 4, 3);
  img.pixels.pop_back();
  EXPECT_THROW(io::encode_png(img), Error);
  EXPECT_THROW(io::encode_png(io::Image(3, 3, 2)), Error);
}

// One sample, a 2×2 map of 3 channels, one local: the local map is channel 0, the remote
// one channels 1 + 2; both share one scale, whose top (the largest position of either map)
// is white and whose zero is black, and each map covers the picture by nearest neighbour.
TEST(Figures, HeatmapsShareOneScaleAcrossLocalAndRemote) {
  // positions (0,0) (0,1) (1,0) (1,1); channels [local | remote remote]
  const Tensor a = Tensor::from_vector({1, 2, 2, 3}, {4, 1, 1,  //
                                                      0, 0, 0,  //
                                                      2, 3, 5,  //
                                                      1, 0, 0},
                                       DType::f32);
  const auto [local, remote] = train::importance_heatmaps(a, 0, 1, 4, 4);
  ASSERT_EQ(local.width, 4);
  ASSERT_EQ(remote.height, 4);
  // The top is the remote 8 at (1,0): white; the local 4 at (0,0) is half of it.
  EXPECT_EQ(std::vector<uint8_t>(remote.at(0, 2), remote.at(0, 2) + 3), (std::vector<uint8_t>{255, 255, 255}));
  EXPECT_EQ(std::vector<uint8_t>(remote.at(3, 3), remote.at(3, 3) + 3), (std::vector<uint8_t>{0, 0, 0}));
  // t = 0.5 on the hot ramp: red full, green half, no blue.
  EXPECT_EQ(std::vector<uint8_t>(local.at(1, 1), local.at(1, 1) + 3), (std::vector<uint8_t>{255, 128, 0}));
  EXPECT_EQ(std::vector<uint8_t>(local.at(2, 0), local.at(2, 0) + 3), (std::vector<uint8_t>{0, 0, 0}));
  // All zero: black, no division by zero.
  const auto [zl, zr] = train::importance_heatmaps(Tensor::zeros({1, 2, 2, 3}, DType::f32), 0, 1, 2, 2);
  for (uint8_t p : zl.pixels) EXPECT_EQ(p, 0);
  for (uint8_t p : zr.pixels) EXPECT_EQ(p, 0);
}

TEST(Figures, ChannelChartDrawsABarPerChannelInTheSideColours) {
  const io::Image chart = train::channel_chart({0.5, 0.25, 0.0, 0.25}, 1);
  EXPECT_EQ(chart.width, 4 * 10 + 2);
  EXPECT_EQ(chart.height, 72);
  auto colour = [&](int64_t x, int64_t y) { return std::vector<uint8_t>(chart.at(x, y), chart.at(x, y) + 3); };
  const int64_t bottom = 4 + 64 - 1;
  EXPECT_EQ(colour(2, 4), (std::vector<uint8_t>{230, 120, 30}));       // the local bar, full height
  EXPECT_EQ(colour(12, 4), (std::vector<uint8_t>{255, 255, 255}));     // a remote bar of half height
  EXPECT_EQ(colour(12, bottom), (std::vector<uint8_t>{60, 110, 200}));
  EXPECT_EQ(colour(22, bottom), (std::vector<uint8_t>{255, 255, 255}));  // a zero bar
}

}  // namespace
}  // namespace agilenn
