// The IDX (MNIST, Fashion-MNIST), CIFAR-10/100, SVHN (MAT v5) and Tiny-ImageNet (JPEG tree)
// readers on small files written here in the published layouts, whole, truncated and corrupt.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdio>  // before jpeglib.h, which uses FILE without including it

#include <jpeglib.h>

#include <array>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "engine/core/error.h"
#include "engine/data/dataset.h"

namespace agilenn::data {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;

// A fresh directory under the system temp dir, removed with everything in it.
class TempDir {
 public:
  TempDir() : path_(fs::temp_directory_path() / ("agilenn-readers-" + std::to_string(std::random_device{}()))) {
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

void write_bytes(const fs::path& file, const std::vector<uint8_t>& bytes) {
  std::ofstream out(file, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << file;
}

std::vector<uint8_t> read_bytes(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The message of the agilenn::Error that f throws, or "" (and a failure) when it throws none.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no agilenn::Error thrown";
  return "";
}

// ---- SVHN: a minimal MAT v5 writer, laid out as MATLAB writes train_32x32.mat ----

constexpr uint32_t mi_int8 = 1, mi_uint8 = 2, mi_int32 = 5, mi_uint32 = 6, mi_double = 9, mi_matrix = 14,
                   mi_compressed = 15;
constexpr uint32_t mx_double_class = 6, mx_uint8_class = 9;

template <class T>
void put(std::vector<uint8_t>& out, T v) {
  uint8_t b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));  // the test host is little-endian, as the 'IM' files written here declare
  out.insert(out.end(), b, b + sizeof(T));
}

std::vector<uint8_t> mat_header() {
  std::string text = "MATLAB 5.0 MAT-file, Platform: GLNXA64, Created on: Thu Jan  1 00:00:00 2015";
  text.resize(116, ' ');
  std::vector<uint8_t> h(128, 0);  // bytes 116..123, the subsystem data offset, stay 0
  std::copy(text.begin(), text.end(), h.begin());
  h[124] = 0x00;  // version 0x0100, little-endian
  h[125] = 0x01;
  h[126] = 'I';
  h[127] = 'M';
  return h;
}

// A data element: 8-byte tag, data, padding to 8 bytes; the 4-byte small form when the data fit in 4 bytes.
std::vector<uint8_t> element(uint32_t type, const std::vector<uint8_t>& data) {
  std::vector<uint8_t> e;
  if (data.size() <= 4 && type != mi_matrix) {
    put<uint32_t>(e, static_cast<uint32_t>(data.size()) << 16 | type);
    e.insert(e.end(), data.begin(), data.end());
    e.resize(8, 0);
    return e;
  }
  put<uint32_t>(e, type);
  put<uint32_t>(e, static_cast<uint32_t>(data.size()));
  e.insert(e.end(), data.begin(), data.end());
  e.resize((e.size() + 7) / 8 * 8, 0);
  return e;
}

std::vector<uint8_t> matrix(const std::string& name, uint32_t mx_class, const std::vector<int32_t>& dims,
                            uint32_t data_type, const std::vector<uint8_t>& real) {
  std::vector<uint8_t> flags, dim_bytes, body;
  put<uint32_t>(flags, mx_class);
  put<uint32_t>(flags, 0);
  for (int32_t d : dims) put<int32_t>(dim_bytes, d);
  for (const auto& part : {element(mi_uint32, flags), element(mi_int32, dim_bytes),
                           element(mi_int8, std::vector<uint8_t>(name.begin(), name.end())), element(data_type, real)})
    body.insert(body.end(), part.begin(), part.end());
  return element(mi_matrix, body);
}

// A miCOMPRESSED element wrapping `inner` (a whole miMATRIX element); unpadded, as MATLAB writes it.
std::vector<uint8_t> compressed(const std::vector<uint8_t>& inner) {
  uLongf size = compressBound(static_cast<uLong>(inner.size()));
  std::vector<uint8_t> packed(size);
  EXPECT_EQ(compress2(packed.data(), &size, inner.data(), static_cast<uLong>(inner.size()), 9), Z_OK);
  packed.resize(size);
  std::vector<uint8_t> e;
  put<uint32_t>(e, mi_compressed);
  put<uint32_t>(e, static_cast<uint32_t>(packed.size()));
  e.insert(e.end(), packed.begin(), packed.end());
  return e;
}

// Pixel (row r, column c, channel k) of image n in the test files: distinct across the 3 test images.
uint8_t svhn_pixel(int r, int c, int k, int n) { return static_cast<uint8_t>(r * 7 + c * 3 + k * 50 + n * 80); }

// X as MATLAB stores it: column-major 32×32×3×n.
std::vector<uint8_t> svhn_x(int n) {
  std::vector<uint8_t> x(static_cast<size_t>(32 * 32 * 3 * n));
  for (int i = 0; i < n; ++i)
    for (int k = 0; k < 3; ++k)
      for (int c = 0; c < 32; ++c)
        for (int r = 0; r < 32; ++r) x[static_cast<size_t>(r + 32 * (c + 32 * (k + 3 * i)))] = svhn_pixel(r, c, k, i);
  return x;
}

enum class LabelStorage { uint8, float64, double_class_as_uint8 };

std::vector<uint8_t> y_matrix(const std::vector<double>& labels, LabelStorage storage) {
  const std::vector<int32_t> dims = {static_cast<int32_t>(labels.size()), 1};
  std::vector<uint8_t> real;
  if (storage == LabelStorage::float64) {
    for (double v : labels) put<double>(real, v);
    return matrix("y", mx_double_class, dims, mi_double, real);
  }
  for (double v : labels) real.push_back(static_cast<uint8_t>(v));
  // MATLAB saves a double array of small integers with uint8 storage; the class stays double.
  return matrix("y", storage == LabelStorage::uint8 ? mx_uint8_class : mx_double_class, dims, mi_uint8, real);
}

struct SvhnFile {
  bool compress = false;
  LabelStorage storage = LabelStorage::uint8;
  std::vector<double> labels = {10, 1, 7};
  std::vector<int32_t> x_dims = {32, 32, 3, 3};
  bool with_y = true;
};

std::vector<uint8_t> svhn_mat(const SvhnFile& f) {
  std::vector<uint8_t> out = mat_header();
  auto add = [&](const std::vector<uint8_t>& m) {
    const std::vector<uint8_t> e = f.compress ? compressed(m) : m;
    out.insert(out.end(), e.begin(), e.end());
  };
  add(matrix("X", mx_uint8_class, f.x_dims, mi_uint8, svhn_x(3)));
  if (f.with_y) add(y_matrix(f.labels, f.storage));
  return out;
}

void expect_svhn_images(const ImageDataset& ds) {
  ASSERT_EQ(ds.size(), 3);
  EXPECT_EQ(ds.height, 32);
  EXPECT_EQ(ds.width, 32);
  EXPECT_EQ(ds.channels, 3);
  EXPECT_EQ(ds.classes, 10);
  EXPECT_EQ(ds.labels, (std::vector<int32_t>{0, 1, 7}));  // label 10 is digit 0
  for (int n = 0; n < 3; ++n)
    for (int r = 0; r < 32; ++r)
      for (int c = 0; c < 32; ++c)
        for (int k = 0; k < 3; ++k)
          ASSERT_EQ(ds.image(n)[(r * 32 + c) * 3 + k], svhn_pixel(r, c, k, n))
              << "image " << n << " row " << r << " col " << c << " channel " << k;
}

TEST(SvhnReader, UncompressedWithUint8LabelsIsNhwc) {
  TempDir dir;
  write_bytes(dir.path() / "train_32x32.mat", svhn_mat({}));
  const ImageDataset ds = read_svhn(dir.path().string(), Split::train);
  EXPECT_EQ(ds.name, "svhn/train");
  expect_svhn_images(ds);
}

TEST(SvhnReader, CompressedWithDoubleLabels) {
  TempDir dir;
  write_bytes(dir.path() / "test_32x32.mat", svhn_mat({.compress = true, .storage = LabelStorage::float64}));
  const ImageDataset ds = read_svhn(dir.path().string(), Split::test);
  EXPECT_EQ(ds.name, "svhn/test");
  expect_svhn_images(ds);
}

TEST(SvhnReader, DoubleLabelsStoredAsUint8) {
  TempDir dir;
  const fs::path file = dir.path() / "digits.mat";
  write_bytes(file, svhn_mat({.compress = true, .storage = LabelStorage::double_class_as_uint8}));
  const ImageDataset ds = read_svhn_mat(file.string(), "svhn/extra");
  EXPECT_EQ(ds.name, "svhn/extra");
  expect_svhn_images(ds);
}

TEST(SvhnReader, MissingFileIsNamed) {
  TempDir dir;
  EXPECT_THAT(error_of([&] { read_svhn(dir.path().string(), Split::train); }), HasSubstr("train_32x32.mat"));
}

TEST(SvhnReader, TruncatedFilesAreRefused) {
  TempDir dir;
  for (bool compress : {false, true}) {
    SCOPED_TRACE(compress ? "compressed" : "uncompressed");
    const fs::path file = dir.path() / "cut.mat";
    std::vector<uint8_t> bytes = svhn_mat({.compress = compress});
    bytes.resize(bytes.size() - 100);
    write_bytes(file, bytes);
    EXPECT_THAT(error_of([&] { read_svhn_mat(file.string(), "svhn/test"); }),
                AllOf(HasSubstr(file.string()), HasSubstr("truncated")));
    bytes.resize(100);  // inside the header
    write_bytes(file, bytes);
    EXPECT_THAT(error_of([&] { read_svhn_mat(file.string(), "svhn/test"); }),
                AllOf(HasSubstr(file.string()), HasSubstr("too short")));
  }
}

TEST(SvhnReader, CorruptCompressedDataIsRefused) {
  TempDir dir;
  const fs::path file = dir.path() / "corrupt.mat";
  std::vector<uint8_t> bytes = svhn_mat({.compress = true});
  for (size_t i = 140; i < 200; ++i) bytes[i] ^= 0x5a;  // inside X's zlib stream, past its header
  write_bytes(file, bytes);
  EXPECT_THAT(error_of([&] { read_svhn_mat(file.string(), "svhn/test"); }),
              AllOf(HasSubstr(file.string()), HasSubstr("corrupt compressed element")));
}

TEST(SvhnReader, WrongMagicOrEndiannessIsRefused) {
  TempDir dir;
  const fs::path file = dir.path() / "header.mat";
  std::vector<uint8_t> bytes = svhn_mat({});
  bytes[126] = 'M';
  bytes[127] = 'I';
  write_bytes(file, bytes);
  EXPECT_THAT(error_of([&] { read_svhn_mat(file.string(), "svhn/test"); }),
              AllOf(HasSubstr(file.string()), HasSubstr("big-endian")));
  bytes[126] = 'X';
  bytes[127] = 'X';
  write_bytes(file, bytes);
  EXPECT_THAT(error_of([&] { read_svhn_mat(file.string(), "svhn/test"); }),
              AllOf(HasSubstr(file.string()), HasSubstr("not a MAT v5 file")));
  bytes[126] = 'I';
  bytes[127] = 'M';
  bytes[125] = 0x02;  // version 0x0200: MAT v7.3, an HDF5 file
  write_bytes(file, bytes);
  EXPECT_THAT(error_of([&] { read_svhn_mat(file.string(), "svhn/test"); }),
              AllOf(HasSubstr(file.string()), HasSubstr("v7.3")));
}

TEST(SvhnReader, LabelOutOfRangeNamesFileAndRecord) {
  TempDir dir;
  const fs::path file = dir.path() / "labels.mat";
  for (LabelStorage storage : {LabelStorage::uint8, LabelStorage::float64}) {
    write_bytes(file, svhn_mat({.storage = storage, .labels = {3, 11, 4}}));
    EXPECT_THAT(error_of([&] { read_svhn_mat(file.string(), "svhn/test"); }),
                AllOf(HasSubstr(file.string()), HasSubstr("record 1"), HasSubstr("label 11")));
  }
  write_bytes(file, svhn_mat({.storage = LabelStorage::float64, .labels = {3, 4, 0}}));
  EXPECT_THAT(error_of([&] { read_svhn_mat(file.string(), "svhn/test"); }),
              AllOf(HasSubstr(file.string()), HasSubstr("record 2"), HasSubstr("label 0")));
}

TEST(SvhnReader, DimsAndCountsMustAgree) {
  TempDir dir;
  const fs::path file = dir.path() / "dims.mat";
  write_bytes(file, svhn_mat({.x_dims = {32, 32, 1, 9}}));  // same byte count, wrong geometry
  EXPECT_THAT(error_of([&] { read_svhn_mat(file.string(), "svhn/test"); }),
              AllOf(HasSubstr(file.string()), HasSubstr("X has dims 32×32×1×9")));
  write_bytes(file, svhn_mat({.x_dims = {32, 32, 3, 4}}));  // dims promise more than the data hold
  EXPECT_THAT(error_of([&] { read_svhn_mat(file.string(), "svhn/test"); }),
              AllOf(HasSubstr(file.string()), HasSubstr("holds 9216 values")));
  // Dims whose product overflows int64: refused before any size is computed from them.
  write_bytes(file, svhn_mat({.x_dims = {2147483647, 2147483647, 2147483647, 3}}));
  EXPECT_THAT(error_of([&] { read_svhn_mat(file.string(), "svhn/test"); }),
              AllOf(HasSubstr(file.string()), HasSubstr("variable X"), HasSubstr("more elements than int64 holds")));
  write_bytes(file, svhn_mat({.labels = {1, 2}}));
  EXPECT_THAT(error_of([&] { read_svhn_mat(file.string(), "svhn/test"); }),
              AllOf(HasSubstr(file.string()), HasSubstr("2 labels in y for 3 images")));
  write_bytes(file, svhn_mat({.with_y = false}));
  EXPECT_THAT(error_of([&] { read_svhn_mat(file.string(), "svhn/test"); }),
              AllOf(HasSubstr(file.string()), HasSubstr("no variable y")));
}

// ---- Tiny-ImageNet: a small tree in the published layout, JPEGs encoded here with libjpeg ----

using Rgb = std::array<uint8_t, 3>;

// Quadrants of flat colour, split at row and column 32 so that every 8×8 block is flat; written at quality 100
// without chroma subsampling (whose smoothing upsampler would blur the edges), so only the colour conversion
// rounds and each pixel decodes within ±2.
struct Quadrants {
  Rgb top_left, top_right, bottom_left, bottom_right;
  Rgb at(int r, int c) const {
    return r < 32 ? (c < 32 ? top_left : top_right) : (c < 32 ? bottom_left : bottom_right);
  }
};
constexpr int tolerance = 2;

void write_jpeg(const fs::path& file, int side, int components, const Quadrants& q) {
  FILE* out = std::fopen(file.string().c_str(), "wb");
  ASSERT_NE(out, nullptr) << file;
  jpeg_compress_struct cinfo;
  jpeg_error_mgr err;
  cinfo.err = jpeg_std_error(&err);
  jpeg_create_compress(&cinfo);
  jpeg_stdio_dest(&cinfo, out);
  cinfo.image_width = static_cast<JDIMENSION>(side);
  cinfo.image_height = static_cast<JDIMENSION>(side);
  cinfo.input_components = components;
  cinfo.in_color_space = components == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, 100, TRUE);
  cinfo.comp_info[0].h_samp_factor = cinfo.comp_info[0].v_samp_factor = 1;  // 4:4:4
  jpeg_start_compress(&cinfo, TRUE);
  std::vector<uint8_t> row(static_cast<size_t>(side * components));
  while (cinfo.next_scanline < cinfo.image_height) {
    const int r = static_cast<int>(cinfo.next_scanline);
    for (int c = 0; c < side; ++c)
      for (int k = 0; k < components; ++k)
        row[static_cast<size_t>(c * components + k)] = q.at(r, c)[static_cast<size_t>(k)];
    JSAMPROW rows[1] = {row.data()};
    jpeg_write_scanlines(&cinfo, rows, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  std::fclose(out);
}

Rgb grey(uint8_t v) { return {v, v, v}; }

// Image k of class `label`: its quadrant colours identify it, so order and labels can be checked from pixels.
Quadrants tiny_image(int label, int k) {
  const auto a = static_cast<uint8_t>(30 + 70 * label), b = static_cast<uint8_t>(20 + 50 * k);
  return {{a, b, 200}, {b, 200, a}, {200, a, b}, {255, 0, 128}};
}

void expect_image(const ImageDataset& ds, int64_t i, const Quadrants& q) {
  for (int r = 0; r < 64; ++r)
    for (int c = 0; c < 64; ++c)
      for (int k = 0; k < 3; ++k) {
        const int got = ds.image(i)[(r * 64 + c) * 3 + k], want = q.at(r, c)[static_cast<size_t>(k)];
        ASSERT_NEAR(got, want, tolerance) << "image " << i << " row " << r << " col " << c << " channel " << k;
      }
}

// wnids.txt lists n002, n001, n003 (labels 0, 1, 2: line order, not name order). n001's image is grayscale.
class TinyImageNetReader : public ::testing::Test {
 protected:
  void SetUp() override {
    const fs::path root = dir_.path();
    std::ofstream(root / "wnids.txt") << "n002\nn001\nn003\n";
    const std::vector<std::pair<std::string, int>> train = {{"n002", 3}, {"n001", 1}, {"n003", 2}};
    for (size_t label = 0; label < train.size(); ++label) {
      const auto& [wnid, count] = train[label];
      fs::create_directories(root / "train" / wnid / "images");
      std::ofstream(root / "train" / wnid / (wnid + "_boxes.txt")) << wnid << "_0.JPEG\t0\t0\t63\t63\n";
      for (int k = count - 1; k >= 0; --k)  // written last to first: the order must come from the reader
        write_tiny(root / "train" / wnid / "images", wnid, static_cast<int>(label), k);
    }
    fs::create_directories(root / "val" / "images");
    write_jpeg(root / "val" / "images" / "val_0.JPEG", 64, 3, tiny_image(2, 7));
    write_jpeg(root / "val" / "images" / "val_1.JPEG", 64, 1, grey_image());
    write_jpeg(root / "val" / "images" / "val_2.JPEG", 64, 3, tiny_image(0, 8));
    std::ofstream(root / "val" / "val_annotations.txt")
        << "val_0.JPEG\tn003\t0\t1\t62\t63\nval_1.JPEG\tn001\t5\t5\t40\t40\nval_2.JPEG\tn002\t2\t3\t50\t60\n";
  }

  static Quadrants grey_image() { return {grey(0), grey(90), grey(170), grey(255)}; }

  void write_tiny(const fs::path& images, const std::string& wnid, int label, int k) {
    const fs::path file = images / (wnid + "_" + std::to_string(k) + ".JPEG");
    if (wnid == "n001") {
      write_jpeg(file, 64, 1, grey_image());
    } else {
      write_jpeg(file, 64, 3, tiny_image(label, k));
    }
  }

  std::string root() const { return dir_.path().string(); }

  TempDir dir_;
};

TEST_F(TinyImageNetReader, TrainInLabelThenNameOrder) {
  const ImageDataset ds = read_tiny_imagenet(root(), Split::train);
  EXPECT_EQ(ds.name, "tiny-imagenet/train");
  EXPECT_EQ(ds.height, 64);
  EXPECT_EQ(ds.width, 64);
  EXPECT_EQ(ds.channels, 3);
  EXPECT_EQ(ds.classes, 3);
  ASSERT_EQ(ds.size(), 6);
  EXPECT_EQ(ds.labels, (std::vector<int32_t>{0, 0, 0, 1, 2, 2}));
  expect_image(ds, 0, tiny_image(0, 0));
  expect_image(ds, 1, tiny_image(0, 1));
  expect_image(ds, 2, tiny_image(0, 2));
  expect_image(ds, 3, grey_image());  // grey replicated into R, G and B
  expect_image(ds, 4, tiny_image(2, 0));
  expect_image(ds, 5, tiny_image(2, 1));
}

TEST_F(TinyImageNetReader, TestIsOfficialValInAnnotationOrder) {
  const ImageDataset ds = read_tiny_imagenet(root(), Split::test);
  EXPECT_EQ(ds.name, "tiny-imagenet/test");
  EXPECT_EQ(ds.classes, 3);
  ASSERT_EQ(ds.size(), 3);
  EXPECT_EQ(ds.labels, (std::vector<int32_t>{2, 1, 0}));
  expect_image(ds, 0, tiny_image(2, 7));
  expect_image(ds, 1, grey_image());
  expect_image(ds, 2, tiny_image(0, 8));
}

TEST_F(TinyImageNetReader, MissingWnidsIsNamed) {
  fs::remove(dir_.path() / "wnids.txt");
  EXPECT_THAT(error_of([&] { read_tiny_imagenet(root(), Split::train); }), HasSubstr("wnids.txt"));
}

TEST_F(TinyImageNetReader, UnknownWnidInAnnotations) {
  std::ofstream(dir_.path() / "val" / "val_annotations.txt", std::ios::app) << "val_3.JPEG\tn999\t0\t0\t1\t1\n";
  EXPECT_THAT(error_of([&] { read_tiny_imagenet(root(), Split::test); }),
              AllOf(HasSubstr("val_annotations.txt"), HasSubstr("line 4"), HasSubstr("unknown wnid n999")));
}

TEST_F(TinyImageNetReader, MissingJpegIsNamed) {
  const fs::path file = dir_.path() / "val" / "images" / "val_1.JPEG";
  fs::remove(file);
  EXPECT_THAT(error_of([&] { read_tiny_imagenet(root(), Split::test); }),
              AllOf(HasSubstr("cannot open"), HasSubstr(file.string())));
}

// Found by fuzzing (tests/fuzz/regressions/tiny_imagenet): an annotation naming a
// directory used to escape as a std::ios_base::failure from reading it.
TEST_F(TinyImageNetReader, AnImageThatIsADirectoryIsNamed) {
  const fs::path file = dir_.path() / "val" / "images" / "val_1.JPEG";
  fs::remove(file);
  fs::create_directories(file);
  EXPECT_THAT(error_of([&] { read_tiny_imagenet(root(), Split::test); }),
              AllOf(HasSubstr("is a directory"), HasSubstr(file.string())));
}

TEST_F(TinyImageNetReader, TruncatedJpegIsRefused) {
  const fs::path file = dir_.path() / "train" / "n003" / "images" / "n003_1.JPEG";
  std::vector<uint8_t> bytes = read_bytes(file);
  bytes.resize(bytes.size() / 2);
  write_bytes(file, bytes);
  EXPECT_THAT(error_of([&] { read_tiny_imagenet(root(), Split::train); }),
              AllOf(HasSubstr(file.string()), HasSubstr("not a valid JPEG")));
  write_bytes(file, {0xff, 0xd8, 0xff});  // a start-of-image marker and nothing more
  EXPECT_THAT(error_of([&] { read_tiny_imagenet(root(), Split::train); }),
              AllOf(HasSubstr(file.string()), HasSubstr("not a valid JPEG")));
}

TEST_F(TinyImageNetReader, WrongSizeIsRefused) {
  const fs::path file = dir_.path() / "train" / "n002" / "images" / "n002_2.JPEG";
  write_jpeg(file, 32, 3, tiny_image(0, 2));
  EXPECT_THAT(error_of([&] { read_tiny_imagenet(root(), Split::train); }),
              AllOf(HasSubstr(file.string()), HasSubstr("is 32×32")));
}

// ---- IDX (MNIST / Fashion-MNIST), raw and gzip-compressed ----

void put_be32(std::vector<uint8_t>& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<uint8_t>(v >> s));
}

std::vector<uint8_t> idx_images(uint32_t n, uint32_t h, uint32_t w, size_t pixel_bytes) {
  std::vector<uint8_t> f;
  put_be32(f, 0x00000803);
  put_be32(f, n);
  put_be32(f, h);
  put_be32(f, w);
  for (size_t i = 0; i < pixel_bytes; ++i) f.push_back(static_cast<uint8_t>(i * 7));
  return f;
}

std::vector<uint8_t> idx_labels(const std::vector<uint8_t>& labels) {
  std::vector<uint8_t> f;
  put_be32(f, 0x00000801);
  put_be32(f, static_cast<uint32_t>(labels.size()));
  f.insert(f.end(), labels.begin(), labels.end());
  return f;
}

// A gzip file (zlib's deflate with the gzip wrapper), as the official .gz files are.
std::vector<uint8_t> gzipped(const std::vector<uint8_t>& raw) {
  z_stream zs{};
  EXPECT_EQ(deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::vector<uint8_t> out(deflateBound(&zs, static_cast<uLong>(raw.size())) + 32);
  zs.next_in = const_cast<Bytef*>(raw.data());
  zs.avail_in = static_cast<uInt>(raw.size());
  zs.next_out = out.data();
  zs.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

class IdxReader : public ::testing::Test {
 protected:
  void write(const std::vector<uint8_t>& images, const std::vector<uint8_t>& labels, bool gzip = false) {
    write_bytes(images_, gzip ? gzipped(images) : images);
    write_bytes(labels_, gzip ? gzipped(labels) : labels);
  }
  ImageDataset read() { return read_idx(images_.string(), labels_.string(), 10, "idx-test"); }

  TempDir dir_;
  fs::path images_ = dir_.path() / "images-idx3-ubyte", labels_ = dir_.path() / "labels-idx1-ubyte";
};

TEST_F(IdxReader, RawAndGzipReadTheSameImagesAndLabels) {
  for (bool gzip : {false, true}) {
    write(idx_images(3, 2, 4, 24), idx_labels({7, 0, 9}), gzip);
    const ImageDataset ds = read();
    EXPECT_EQ(ds.size(), 3);
    EXPECT_EQ(ds.height, 2);
    EXPECT_EQ(ds.width, 4);
    EXPECT_EQ(ds.channels, 1);
    EXPECT_EQ(ds.labels, (std::vector<int32_t>{7, 0, 9}));
    EXPECT_EQ(ds.image(2)[3], static_cast<uint8_t>((16 + 3) * 7)) << (gzip ? "gzip" : "raw");
  }
}

TEST_F(IdxReader, TruncatedOrPaddedFilesAreRefusedNamingTheFile) {
  for (bool gzip : {false, true}) {
    SCOPED_TRACE(gzip ? "gzip" : "raw");
    std::vector<uint8_t> images = idx_images(3, 2, 4, 24);
    write(std::vector<uint8_t>(images.begin(), images.end() - 1), idx_labels({1, 2, 3}), gzip);
    EXPECT_THAT(error_of([&] { read(); }), AllOf(HasSubstr("images-idx3-ubyte"), HasSubstr("promises 3")));
    write(idx_images(3, 2, 4, 25), idx_labels({1, 2, 3}), gzip);
    EXPECT_THAT(error_of([&] { read(); }), HasSubstr("images-idx3-ubyte"));
    write(idx_images(3, 2, 4, 24), idx_labels({1, 2}), gzip);
    EXPECT_THAT(error_of([&] { read(); }), AllOf(HasSubstr("labels-idx1-ubyte"), HasSubstr("2 labels for 3")));
    write(std::vector<uint8_t>(images.begin(), images.begin() + 10), idx_labels({1, 2, 3}), gzip);
    EXPECT_THAT(error_of([&] { read(); }), HasSubstr("not an IDX image file"));
  }
}

TEST_F(IdxReader, AHeaderWhoseSizeOverflowsIsRefused) {
  write(idx_images(0xffffffffu, 0xffffffffu, 0xffffffffu, 8), idx_labels({1}));
  EXPECT_THAT(error_of([&] { read(); }), AllOf(HasSubstr("images-idx3-ubyte"), HasSubstr("corrupt header")));
}

TEST_F(IdxReader, ALabelOutOfRangeNamesTheRecord) {
  write(idx_images(3, 2, 4, 24), idx_labels({1, 10, 3}));
  EXPECT_THAT(error_of([&] { read(); }), AllOf(HasSubstr("labels-idx1-ubyte"), HasSubstr("record 1: label 10")));
}

// A gzip file cut short, with a flipped byte, or with bytes after its stream; and one whose
// trailer declares less than it inflates to (a bomb dressed as a small file).
TEST_F(IdxReader, CorruptGzipIsRefused) {
  const std::vector<uint8_t> good = gzipped(idx_images(3, 2, 4, 24));
  write_bytes(labels_, idx_labels({1, 2, 3}));
  auto refused = [&](const std::vector<uint8_t>& packed, const std::string& why) {
    write_bytes(images_, packed);
    EXPECT_THAT(error_of([&] { read(); }), AllOf(HasSubstr("images-idx3-ubyte"), HasSubstr(why)));
  };
  refused(std::vector<uint8_t>(good.begin(), good.end() - 6), "");
  std::vector<uint8_t> flipped = good;
  flipped[good.size() / 2] ^= 0x55;
  refused(flipped, "");
  std::vector<uint8_t> trailing = good;
  trailing.push_back(0);
  refused(trailing, "");
  const std::vector<uint8_t> big = gzipped(idx_images(1000, 28, 28, 1000 * 28 * 28));
  std::vector<uint8_t> small_declared = big;
  small_declared[big.size() - 4] = 100, small_declared[big.size() - 3] = 0;
  small_declared[big.size() - 2] = 0, small_declared[big.size() - 1] = 0;
  refused(small_declared, "inflates past the 100 bytes its gzip trailer declares");
}

// Found by fuzzing (tests/fuzz/regressions/idx): a gzip trailer declaring 4 GiB made the
// reader reserve that much before inflating anything; now the reservation is bounded by
// what the input can inflate to, and the lie is refused.
TEST_F(IdxReader, AGzipTrailerDeclaringMoreThanTheStreamHoldsIsRefused) {
  std::vector<uint8_t> packed = gzipped(idx_images(3, 2, 4, 24));
  for (size_t i = packed.size() - 4; i < packed.size(); ++i) packed[i] = 0xff;
  write_bytes(images_, packed);
  write_bytes(labels_, idx_labels({1, 2, 3}));
  EXPECT_THAT(error_of([&] { read(); }), AllOf(HasSubstr("images-idx3-ubyte"), HasSubstr("not a valid gzip stream")));
}

// ---- CIFAR-10 / CIFAR-100 binary versions ----

// n records of `label_bytes` label bytes then 3072 pixel bytes (R, G, B planes of 32×32).
std::vector<uint8_t> cifar_records(const std::vector<std::vector<uint8_t>>& labels) {
  std::vector<uint8_t> f;
  for (size_t r = 0; r < labels.size(); ++r) {
    f.insert(f.end(), labels[r].begin(), labels[r].end());
    for (int c = 0; c < 3; ++c)
      for (int p = 0; p < 1024; ++p) f.push_back(static_cast<uint8_t>(r * 50 + c * 10 + p % 7));
  }
  return f;
}

TEST(CifarReader, Cifar10ReadsTheFiveTrainBatchesInOrderAndTheTestBatch) {
  TempDir dir;
  for (int b = 1; b <= 5; ++b)
    write_bytes(dir.path() / ("data_batch_" + std::to_string(b) + ".bin"),
                cifar_records({{static_cast<uint8_t>(b)}, {static_cast<uint8_t>(9 - b)}}));
  write_bytes(dir.path() / "test_batch.bin", cifar_records({{3}}));
  const ImageDataset train = read_cifar10(dir.path().string(), Split::train);
  EXPECT_EQ(train.size(), 10);
  EXPECT_EQ(train.labels, (std::vector<int32_t>{1, 8, 2, 7, 3, 6, 4, 5, 5, 4}));
  EXPECT_EQ(train.height, 32);
  EXPECT_EQ(train.channels, 3);
  // Planes become NHWC: pixel p of record 1 is (R, G, B) = (50 + p%7, 60 + p%7, 70 + p%7).
  EXPECT_EQ(train.image(1)[5 * 3 + 0], 50 + 5);
  EXPECT_EQ(train.image(1)[5 * 3 + 1], 60 + 5);
  EXPECT_EQ(train.image(1)[5 * 3 + 2], 70 + 5);
  EXPECT_EQ(read_cifar10(dir.path().string(), Split::test).labels, (std::vector<int32_t>{3}));
}

TEST(CifarReader, Cifar100TakesTheFineOrTheCoarseLabel) {
  TempDir dir;
  write_bytes(dir.path() / "train.bin", cifar_records({{4, 87}, {19, 3}}));
  EXPECT_EQ(read_cifar100(dir.path().string(), Split::train, true).labels, (std::vector<int32_t>{87, 3}));
  EXPECT_EQ(read_cifar100(dir.path().string(), Split::train, false).labels, (std::vector<int32_t>{4, 19}));
  EXPECT_EQ(read_cifar100(dir.path().string(), Split::train, true).classes, 100);
}

TEST(CifarReader, TruncatedMissingOrMislabelledFilesAreRefusedNamingThem) {
  TempDir dir;
  std::vector<uint8_t> one = cifar_records({{2}, {3}});
  write_bytes(dir.path() / "test_batch.bin", std::vector<uint8_t>(one.begin(), one.end() - 1));
  EXPECT_THAT(error_of([&] { read_cifar10(dir.path().string(), Split::test); }),
              AllOf(HasSubstr("test_batch.bin"), HasSubstr("not a whole number of 3073-byte records")));
  write_bytes(dir.path() / "test_batch.bin", {});
  EXPECT_THAT(error_of([&] { read_cifar10(dir.path().string(), Split::test); }), HasSubstr("test_batch.bin"));
  write_bytes(dir.path() / "test_batch.bin", cifar_records({{2}, {10}}));
  EXPECT_THAT(error_of([&] { read_cifar10(dir.path().string(), Split::test); }),
              AllOf(HasSubstr("test_batch.bin"), HasSubstr("record 1: label 10 outside [0, 10)")));
  EXPECT_THAT(error_of([&] { read_cifar10(dir.path().string(), Split::train); }), HasSubstr("data_batch_1.bin"));
  write_bytes(dir.path() / "test.bin", cifar_records({{20, 5}}));
  EXPECT_THAT(error_of([&] { read_cifar100(dir.path().string(), Split::test, false); }),
              AllOf(HasSubstr("test.bin"), HasSubstr("label 20 outside [0, 20)")));
}

}  // namespace
}  // namespace agilenn::data
