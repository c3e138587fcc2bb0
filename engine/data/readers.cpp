#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "engine/core/error.h"
#include "engine/data/dataset.h"

namespace agilenn::data {

const char* split_name(Split s) { return s == Split::train ? "train" : "test"; }

void ImageDataset::validate() const {
  AGILENN_CHECK(height > 0 && width > 0 && channels > 0, name << ": empty image geometry");
  AGILENN_CHECK(static_cast<int64_t>(pixels.size()) == size() * image_bytes(),
                name << ": " << pixels.size() << " pixel bytes for " << size() << " images of " << image_bytes());
  for (int64_t i = 0; i < size(); ++i)
    AGILENN_CHECK(labels[static_cast<size_t>(i)] >= 0 && labels[static_cast<size_t>(i)] < classes,
                  name << ": record " << i << " has label " << labels[static_cast<size_t>(i)] << " outside [0, "
                       << classes << ")");
}

namespace {

std::vector<uint8_t> read_raw(const std::string& path) {
  AGILENN_CHECK(!std::filesystem::is_directory(path), "'" << path << "' is a directory, not a file");
  std::ifstream in(path, std::ios::binary);
  AGILENN_CHECK(in, "cannot open '" << path << "'");
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Inflates a gzip file. The output is bounded by the size the gzip trailer declares
// (ISIZE: the size mod 2^32, so files that inflate past 4 GiB are refused), so a small
// file cannot expand without limit; zlib checks the trailer's CRC and length at the end.
// Input goes to zlib in pieces its 32-bit counters hold.
std::vector<uint8_t> gunzip(const std::vector<uint8_t>& packed, const std::string& path) {
  AGILENN_CHECK(packed.size() >= 18, "'" << path << "' is truncated: " << packed.size() << " bytes, too short for gzip");
  const uint8_t* tail = packed.data() + packed.size() - 4;
  const size_t declared = uint32_t{tail[0]} | (uint32_t{tail[1]} << 8) | (uint32_t{tail[2]} << 16) | (uint32_t{tail[3]} << 24);
  z_stream zs{};
  AGILENN_CHECK(inflateInit2(&zs, 16 + MAX_WBITS) == Z_OK, "zlib could not start for '" << path << "'");
  std::vector<uint8_t> out;
  // deflate expands at most 1032-fold: reserve no more than the input can give.
  out.reserve(std::min(declared, packed.size() * 1032));
  uint8_t chunk[1 << 16];
  size_t fed = 0;
  int status = Z_OK;
  auto fail = [&](const std::string& why) {
    inflateEnd(&zs);
    AGILENN_THROW("'" << path << "' " << why);
  };
  while (status != Z_STREAM_END) {
    if (zs.avail_in == 0 && fed < packed.size()) {
      const size_t piece = std::min<size_t>(packed.size() - fed, size_t{1} << 30);
      zs.next_in = const_cast<Bytef*>(packed.data() + fed);
      zs.avail_in = static_cast<uInt>(piece);
      fed += piece;
    }
    zs.next_out = chunk;
    zs.avail_out = sizeof(chunk);
    status = inflate(&zs, Z_NO_FLUSH);
    if (status != Z_OK && status != Z_STREAM_END)
      fail(std::string("is not a valid gzip stream (zlib: ") + (zs.msg ? zs.msg : "truncated") + ")");
    const size_t produced = sizeof(chunk) - zs.avail_out;
    if (out.size() + produced > declared)
      fail("inflates past the " + std::to_string(declared) + " bytes its gzip trailer declares");
    out.insert(out.end(), chunk, chunk + produced);
    if (status != Z_STREAM_END && zs.avail_in == 0 && fed == packed.size() && zs.avail_out != 0)
      fail("is truncated: the gzip stream ends early");
  }
  const bool trailing = zs.avail_in > 0 || fed < packed.size();
  inflateEnd(&zs);
  AGILENN_CHECK(!trailing, "'" << path << "' has bytes after its gzip stream");
  return out;
}

uint32_t big_endian32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

// CIFAR records: `label_bytes` label bytes, the label at `label_offset`, then 3 planes of 32×32.
void append_cifar_file(const std::string& path, int64_t label_bytes, int64_t label_offset, int64_t classes,
                       ImageDataset& ds) {
  const std::vector<uint8_t> raw = read_raw(path);
  const int64_t record = label_bytes + 3072;
  AGILENN_CHECK(!raw.empty() && static_cast<int64_t>(raw.size()) % record == 0,
                "'" << path << "' has " << raw.size() << " bytes, not a whole number of " << record << "-byte records");
  const int64_t n = static_cast<int64_t>(raw.size()) / record;
  const size_t base = ds.pixels.size();
  ds.pixels.resize(base + static_cast<size_t>(n * 3072));
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* r = raw.data() + i * record;
    const int32_t label = r[label_offset];
    AGILENN_CHECK(label < classes, "'" << path << "' record " << i << ": label " << label << " outside [0, " << classes
                                       << ")");
    ds.labels.push_back(label);
    uint8_t* dst = ds.pixels.data() + base + static_cast<size_t>(i * 3072);
    for (int64_t p = 0; p < 1024; ++p)
      for (int64_t c = 0; c < 3; ++c) dst[p * 3 + c] = r[label_bytes + c * 1024 + p];
  }
}

std::string join(const std::string& dir, const std::string& file) { return (std::filesystem::path(dir) / file).string(); }

}  // namespace

std::vector<uint8_t> read_file_maybe_gzip(const std::string& path) {
  std::vector<uint8_t> raw = read_raw(path);
  if (raw.size() >= 2 && raw[0] == 0x1f && raw[1] == 0x8b) return gunzip(raw, path);
  return raw;
}

ImageDataset read_cifar10(const std::string& dir, Split split) {
  ImageDataset ds{std::string("cifar10/") + split_name(split), 32, 32, 3, 10, {}, {}};
  if (split == Split::train) {
    for (int b = 1; b <= 5; ++b) append_cifar_file(join(dir, "data_batch_" + std::to_string(b) + ".bin"), 1, 0, 10, ds);
  } else {
    append_cifar_file(join(dir, "test_batch.bin"), 1, 0, 10, ds);
  }
  ds.validate();
  return ds;
}

ImageDataset read_cifar100(const std::string& dir, Split split, bool fine) {
  const int64_t classes = fine ? 100 : 20;
  ImageDataset ds{std::string("cifar100/") + split_name(split), 32, 32, 3, classes, {}, {}};
  append_cifar_file(join(dir, split == Split::train ? "train.bin" : "test.bin"), 2, fine ? 1 : 0, classes, ds);
  ds.validate();
  return ds;
}

ImageDataset read_idx(const std::string& images_path, const std::string& labels_path, int64_t classes,
                      const std::string& name) {
  const std::vector<uint8_t> img = read_file_maybe_gzip(images_path);
  const std::vector<uint8_t> lab = read_file_maybe_gzip(labels_path);
  AGILENN_CHECK(img.size() >= 16 && big_endian32(img.data()) == 0x00000803,
                "'" << images_path << "' is not an IDX image file (magic 0x00000803 expected)");
  AGILENN_CHECK(lab.size() >= 8 && big_endian32(lab.data()) == 0x00000801,
                "'" << labels_path << "' is not an IDX label file (magic 0x00000801 expected)");
  const int64_t n = big_endian32(img.data() + 4), h = big_endian32(img.data() + 8), w = big_endian32(img.data() + 12);
  int64_t pixels = 0;
  const bool overflow = __builtin_mul_overflow(n, h, &pixels) || __builtin_mul_overflow(pixels, w, &pixels);
  AGILENN_CHECK(!overflow && h > 0 && w > 0,
                "'" << images_path << "' has a corrupt header: " << n << " images of " << h << "×" << w);
  AGILENN_CHECK(static_cast<int64_t>(img.size()) - 16 == pixels,
                "'" << images_path << "' holds " << img.size() - 16 << " pixel bytes, its header promises " << n << "×"
                    << h << "×" << w);
  const int64_t nl = big_endian32(lab.data() + 4);
  AGILENN_CHECK(static_cast<int64_t>(lab.size()) == 8 + nl, "'" << labels_path << "' holds " << lab.size() - 8
                                                                << " labels, its header promises " << nl);
  AGILENN_CHECK(nl == n, "'" << labels_path << "' has " << nl << " labels for " << n << " images in '" << images_path
                             << "'");
  ImageDataset ds{name, h, w, 1, classes, std::vector<uint8_t>(img.begin() + 16, img.end()), {}};
  ds.labels.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const int32_t label = lab[static_cast<size_t>(8 + i)];
    AGILENN_CHECK(label < classes, "'" << labels_path << "' record " << i << ": label " << label << " outside [0, "
                                       << classes << ")");
    ds.labels.push_back(label);
  }
  return ds;
}

ImageDataset read_mnist_dir(const std::string& dir, Split split, const std::string& name) {
  const std::string prefix = split == Split::train ? "train" : "t10k";
  auto pick = [&](const std::string& stem) {
    const std::string plain = join(dir, stem), packed = plain + ".gz";
    if (std::filesystem::exists(plain)) return plain;
    AGILENN_CHECK(std::filesystem::exists(packed), "neither '" << plain << "' nor '" << packed << "' exists");
    return packed;
  };
  return read_idx(pick(prefix + "-images-idx3-ubyte"), pick(prefix + "-labels-idx1-ubyte"), 10,
                  name + "/" + split_name(split));
}

}  // namespace agilenn::data
