// SVHN cropped digits as published: MATLAB level-5 MAT-files (the v7 flavour, whose variables sit in
// zlib-compressed elements). The format is parsed here rather than through matio/HDF5 because the two
// variables needed are plain numeric arrays.
#include <zlib.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <type_traits>

#include "engine/core/error.h"
#include "engine/data/dataset.h"

namespace agilenn::data {

namespace {

// MAT v5 data types (miXXX) and array classes (mxXXX_CLASS) used below.
enum MiType : uint32_t {
  mi_int8 = 1, mi_uint8 = 2, mi_int16 = 3, mi_uint16 = 4, mi_int32 = 5, mi_uint32 = 6,
  mi_single = 7, mi_double = 9, mi_matrix = 14, mi_compressed = 15,
};
constexpr uint8_t mx_double_class = 6, mx_uint64_class = 15;  // the numeric classes are 6..15
constexpr uint32_t mx_complex_flag = 0x0800;
constexpr size_t mat_header_bytes = 128;

// Read little-endian whatever the host is: only 'IM' files are accepted.
template <class T>
T little(const uint8_t* p) {
  using U = std::conditional_t<sizeof(T) == 1, uint8_t,
                               std::conditional_t<sizeof(T) == 2, uint16_t,
                                                  std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>>>;
  U u = 0;
  for (size_t i = 0; i < sizeof(T); ++i) u = static_cast<U>(u | static_cast<U>(U{p[i]} << (8 * i)));
  return std::bit_cast<T>(u);
}

struct Element {
  uint32_t type = 0;
  std::span<const uint8_t> data;
};

// Reads the element starting at `pos` in `buf`, advancing `pos` past it and its padding to 8 bytes.
// `where` says which buffer this is (the file, or a variable's inflated data) for messages.
Element next_element(std::span<const uint8_t> buf, size_t& pos, const std::string& path, const std::string& where) {
  AGILENN_CHECK(buf.size() - pos >= 8,
                "'" << path << "' is truncated: " << where << " ends inside a data element tag at byte " << pos);
  const uint32_t word = little<uint32_t>(buf.data() + pos);
  Element e;
  if (word >> 16 != 0) {  // small element: 2-byte type, 2-byte count, up to 4 bytes of data in the tag
    e.type = word & 0xffff;
    const uint32_t bytes = word >> 16;
    AGILENN_CHECK(bytes <= 4, "'" << path << "': " << where << " has a small data element of " << bytes
                                  << " bytes at byte " << pos << " (at most 4 fit)");
    e.data = buf.subspan(pos + 4, bytes);
    pos += 8;
    return e;
  }
  e.type = word;
  const uint32_t bytes = little<uint32_t>(buf.data() + pos + 4);
  AGILENN_CHECK(buf.size() - pos - 8 >= bytes, "'" << path << "' is truncated: " << where << " has a data element of "
                                                   << bytes << " bytes at byte " << pos << " but only "
                                                   << buf.size() - pos - 8 << " follow");
  e.data = buf.subspan(pos + 8, bytes);
  pos += 8 + bytes;
  // Compressed elements are not padded; the last element of a buffer may lack its padding.
  if (e.type != mi_compressed) pos = std::min(buf.size(), pos + (8 - bytes % 8) % 8);
  return e;
}

std::vector<uint8_t> inflate_element(std::span<const uint8_t> packed, const std::string& path) {
  z_stream zs{};
  AGILENN_CHECK(inflateInit(&zs) == Z_OK, "zlib could not start for '" << path << "'");
  zs.next_in = const_cast<Bytef*>(packed.data());
  zs.avail_in = static_cast<uInt>(packed.size());
  std::vector<uint8_t> out(8);  // the inner element's tag first: it announces how much to expect
  int status = Z_OK;
  while (status != Z_STREAM_END) {
    if (zs.total_out == out.size()) {
      // One byte beyond the announced element lets inflate see the stream end without another resize; deflate
      // expands at most 1032:1, so a corrupt tag cannot demand more than that.
      const bool announced = out.size() == 8 && little<uint32_t>(out.data()) >> 16 == 0;
      out.resize(announced ? std::min(8 + size_t{little<uint32_t>(out.data() + 4)} + 1, packed.size() * 1032 + 8)
                           : out.size() * 2);
    }
    zs.next_out = out.data() + zs.total_out;
    zs.avail_out = static_cast<uInt>(std::min<size_t>(out.size() - zs.total_out, UINT32_MAX));
    status = inflate(&zs, Z_NO_FLUSH);
    if (status == Z_BUF_ERROR && zs.avail_in == 0) status = Z_DATA_ERROR;  // no input left, no end of stream
    if (status != Z_OK && status != Z_STREAM_END) {
      const std::string why = zs.msg ? zs.msg : "truncated stream";
      inflateEnd(&zs);
      AGILENN_THROW("'" << path << "' has a corrupt compressed element (zlib: " << why << ")");
    }
  }
  out.resize(zs.total_out);
  inflateEnd(&zs);
  return out;
}

// A numeric miMATRIX variable: dims (column-major) and its real part.
struct MatArray {
  std::string name;
  std::vector<int64_t> dims;
  Element real;

  int64_t numel() const { return agilenn::numel(dims); }  // checked by parse_matrix
};

size_t type_bytes(uint32_t type) {
  switch (type) {
    case mi_int8: case mi_uint8: return 1;
    case mi_int16: case mi_uint16: return 2;
    case mi_int32: case mi_uint32: case mi_single: return 4;
    case mi_double: return 8;
    default: return 0;
  }
}

template <class T, class F>
void for_each_stored_as(const Element& e, F& f) {
  const size_t n = e.data.size() / sizeof(T);
  for (size_t i = 0; i < n; ++i) f(i, static_cast<double>(little<T>(e.data.data() + i * sizeof(T))));
}

// Calls f(i, value) for every value of a numeric element, converted to double (exact for every type here).
template <class F>
void for_each_value(const Element& e, F&& f) {
  switch (e.type) {
    case mi_int8: for_each_stored_as<int8_t>(e, f); break;
    case mi_uint8: for_each_stored_as<uint8_t>(e, f); break;
    case mi_int16: for_each_stored_as<int16_t>(e, f); break;
    case mi_uint16: for_each_stored_as<uint16_t>(e, f); break;
    case mi_int32: for_each_stored_as<int32_t>(e, f); break;
    case mi_uint32: for_each_stored_as<uint32_t>(e, f); break;
    case mi_single: for_each_stored_as<float>(e, f); break;
    case mi_double: for_each_stored_as<double>(e, f); break;
    default: break;  // parse_matrix admits numeric types only
  }
}

std::string dims_text(const std::vector<int64_t>& dims) {
  std::string s;
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? "×" : "") + std::to_string(dims[i]);
  return s;
}

// Parses the contents of a miMATRIX element. Returns the array when its name is in `wanted`; other variables
// (of any class) are skipped after their name.
std::optional<MatArray> parse_matrix(std::span<const uint8_t> m, const std::string& path,
                                     const std::vector<std::string>& wanted) {
  const std::string where = "a variable";
  size_t pos = 0;
  const Element flags = next_element(m, pos, path, where);
  AGILENN_CHECK(flags.type == mi_uint32 && flags.data.size() == 8,
                "'" << path << "': a variable's array flags are not 8 bytes of miUINT32");
  const uint32_t flag_word = little<uint32_t>(flags.data.data());
  const Element dims = next_element(m, pos, path, where);
  AGILENN_CHECK(dims.type == mi_int32 && dims.data.size() >= 8 && dims.data.size() % 4 == 0,
                "'" << path << "': a variable's dimensions are not at least two miINT32 values");
  const Element name = next_element(m, pos, path, where);
  AGILENN_CHECK(name.type == mi_int8, "'" << path << "': a variable's name is not miINT8 text");
  MatArray a;
  a.name.assign(name.data.begin(), name.data.end());
  if (std::find(wanted.begin(), wanted.end(), a.name) == wanted.end()) return std::nullopt;

  const uint8_t cls = flag_word & 0xff;
  AGILENN_CHECK(cls >= mx_double_class && cls <= mx_uint64_class,
                "'" << path << "': variable " << a.name << " is of MATLAB class " << int{cls}
                    << ", not a numeric array");
  AGILENN_CHECK(!(flag_word & mx_complex_flag), "'" << path << "': variable " << a.name << " is complex");
  for (size_t i = 0; i < dims.data.size(); i += 4) {
    const int32_t d = little<int32_t>(dims.data.data() + i);
    AGILENN_CHECK(d >= 0, "'" << path << "': variable " << a.name << " has negative dimension " << d);
    a.dims.push_back(d);
  }
  try {
    agilenn::numel(a.dims);
  } catch (const Error& e) {
    AGILENN_THROW("'" << path << "': variable " << a.name << ": " << e.what());
  }
  a.real = next_element(m, pos, path, where + " " + a.name);
  const size_t width = type_bytes(a.real.type);
  AGILENN_CHECK(width != 0, "'" << path << "': variable " << a.name << " stores its values as MAT data type "
                                << a.real.type << ", not a supported numeric type");
  AGILENN_CHECK(a.real.data.size() == static_cast<size_t>(a.numel()) * width,
                "'" << path << "': variable " << a.name << " holds " << a.real.data.size() / width
                    << " values, its dims " << dims_text(a.dims) << " promise " << a.numel());
  return a;
}

// Calls `use` on every wanted numeric variable of the MAT-file, inflating compressed elements one at a time.
void for_each_variable(const std::string& path, const std::vector<std::string>& wanted,
                       const std::function<void(const MatArray&)>& use) {
  const std::vector<uint8_t> file = read_file_maybe_gzip(path);
  AGILENN_CHECK(file.size() >= mat_header_bytes,
                "'" << path << "' is too short (" << file.size() << " bytes) for a MAT-file header");
  const uint8_t* h = file.data();
  AGILENN_CHECK(!(h[126] == 'M' && h[127] == 'I'),
                "'" << path << "' is a big-endian MAT-file ('MI'); only little-endian ('IM') files are supported");
  AGILENN_CHECK(h[126] == 'I' && h[127] == 'M', "'" << path << "' is not a MAT v5 file: no 'IM' endian indicator");
  const uint16_t version = little<uint16_t>(h + 124);
  AGILENN_CHECK(version != 0x0200, "'" << path << "' is a MAT v7.3 (HDF5) file; save it with -v7 or -v6");
  AGILENN_CHECK(version == 0x0100, "'" << path << "' has MAT version 0x" << std::hex << version << ", not 0x0100");
  // MATLAB's own test: a zero among the first 4 bytes means a level-4 MAT-file.
  AGILENN_CHECK(h[0] && h[1] && h[2] && h[3], "'" << path << "' is a level-4 MAT-file, not level 5");

  const std::span<const uint8_t> body(file);
  size_t pos = mat_header_bytes;
  while (pos < body.size()) {
    const Element e = next_element(body, pos, path, "the file");
    if (e.type == mi_matrix) {
      if (auto a = parse_matrix(e.data, path, wanted)) use(*a);
    } else if (e.type == mi_compressed) {
      const std::vector<uint8_t> inner = inflate_element(e.data, path);
      size_t inner_pos = 0;
      while (inner_pos < inner.size()) {
        const Element m = next_element(inner, inner_pos, path, "a compressed element");
        if (m.type != mi_matrix) continue;
        if (auto a = parse_matrix(m.data, path, wanted)) use(*a);
      }
    }
  }
}

}  // namespace

ImageDataset read_svhn_mat(const std::string& path, const std::string& name) {
  constexpr size_t side = 32, channels = 3;
  ImageDataset ds{name, side, side, channels, 10, {}, {}};
  bool have_x = false;
  std::optional<std::vector<double>> y;
  for_each_variable(path, {"X", "y"}, [&](const MatArray& a) {
    if (a.name == "X") {
      std::vector<int64_t> d = a.dims;
      d.resize(4, 1);  // MATLAB drops trailing singleton dims: a single image is 32×32×3
      AGILENN_CHECK(a.dims.size() <= 4 && d[0] == int64_t{side} && d[1] == int64_t{side} && d[2] == int64_t{channels},
                    "'" << path << "': X has dims " << dims_text(a.dims) << ", expected 32×32×3×N");
      ds.pixels.resize(static_cast<size_t>(a.numel()));
      // MATLAB index r + 32·(c + 32·(k + 3·n)) holds row r, column c, channel k of image n.
      for_each_value(a.real, [&](size_t i, double v) {
        AGILENN_CHECK(v >= 0 && v <= 255 && v == std::floor(v),
                      "'" << path << "': X holds " << v << " at linear index " << i << ", not a uint8 pixel");
        const size_t r = i % side, c = i / side % side, k = i / (side * side) % channels;
        const size_t n = i / (side * side * channels);
        ds.pixels[((n * side + r) * side + c) * channels + k] = static_cast<uint8_t>(v);
      });
      have_x = true;
    } else {
      const size_t longest = static_cast<size_t>(*std::max_element(a.dims.begin(), a.dims.end()));
      AGILENN_CHECK(a.numel() == 0 || static_cast<size_t>(a.numel()) == longest,
                    "'" << path << "': y has dims " << dims_text(a.dims) << ", expected N×1");
      y.emplace(static_cast<size_t>(a.numel()));
      for_each_value(a.real, [&](size_t i, double v) { (*y)[i] = v; });
    }
  });
  AGILENN_CHECK(have_x, "'" << path << "' has no variable X");
  AGILENN_CHECK(y, "'" << path << "' has no variable y");
  const int64_t n = static_cast<int64_t>(ds.pixels.size()) / ds.image_bytes();
  AGILENN_CHECK(static_cast<int64_t>(y->size()) == n,
                "'" << path << "' has " << y->size() << " labels in y for " << n << " images in X");
  ds.labels.reserve(y->size());
  for (size_t i = 0; i < y->size(); ++i) {
    const double v = (*y)[i];
    AGILENN_CHECK(v >= 1 && v <= 10 && v == std::floor(v),
                  "'" << path << "' record " << i << ": label " << v << " is not one of 1..10");
    ds.labels.push_back(v == 10 ? 0 : static_cast<int32_t>(v));  // SVHN writes digit 0 as 10
  }
  ds.validate();
  return ds;
}

ImageDataset read_svhn(const std::string& dir, Split split) {
  const std::string file = split == Split::train ? "train_32x32.mat" : "test_32x32.mat";
  return read_svhn_mat((std::filesystem::path(dir) / file).string(), std::string("svhn/") + split_name(split));
}

}  // namespace agilenn::data
