#include "engine/io/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>

#include "engine/core/error.h"

namespace agilenn::io {
namespace {

const char* safetensors_dtype(DType t) {
  switch (t) {
    case DType::f32: return "F32";
    case DType::f64: return "F64";
    case DType::i32: return "I32";
    case DType::u8: return "U8";
  }
  return "?";
}

DType parse_dtype(const std::string& s, const std::string& path, const std::string& tensor) {
  if (s == "F32") return DType::f32;
  if (s == "F64") return DType::f64;
  if (s == "I32") return DType::i32;
  if (s == "U8") return DType::u8;
  AGILENN_THROW("'" << path << "': tensor '" << tensor << "' has unsupported dtype '" << s << "'");
}

uint32_t crc_of(const char* data, size_t n) {
  uLong crc = crc32(0L, Z_NULL, 0);
  while (n > 0) {
    const auto chunk = static_cast<uInt>(std::min<size_t>(n, 1u << 30));
    crc = crc32(crc, reinterpret_cast<const Bytef*>(data), chunk);
    data += chunk;
    n -= chunk;
  }
  return static_cast<uint32_t>(crc);
}

std::string hex_crc(uint32_t crc) {
  char text[16];
  std::snprintf(text, sizeof(text), "%08x", crc);
  return text;
}

// Where the 8 hex digits of the metadata's file_crc32 start in a checkpoint's bytes: the
// one place in the header (bytes [8, header_end)) where the key appears with its quotes
// unescaped, which no JSON string (tensor name or metadata) can contain.
size_t file_crc_position(const std::string& bytes, size_t header_end, const std::string& path) {
  static const std::string key = "\"file_crc32\":\"";
  const size_t at = bytes.find(key, 8);
  AGILENN_CHECK(at != std::string::npos && at + key.size() + 8 <= header_end &&
                    bytes.find(key, at + 1) >= header_end,
                "'" << path << "' has a corrupt header: file_crc32 is not where it belongs");
  return at + key.size();
}

// The metadata's readers take counts and steps with nlohmann's get<int64_t>, which converts
// a float unchecked: a float outside ±2^31 (no value agilenn writes comes near) is refused.
void check_metadata_numbers(const nlohmann::json& j, const std::string& path) {
  if (j.is_number_float()) {
    const double v = j.get<double>();
    AGILENN_CHECK(std::isfinite(v) && std::abs(v) < 2147483648.0,
                  "'" << path << "' has corrupt metadata: the number " << v << " is out of range");
  }
  if (j.is_structured())
    for (const auto& item : j) check_metadata_numbers(item, path);
}

void write_all(int fd, const char* data, size_t n, const std::string& path) {
  while (n > 0) {
    const ssize_t w = ::write(fd, data, n);
    AGILENN_CHECK(w > 0, "writing '" << path << "' failed: " << std::strerror(errno));
    data += w;
    n -= static_cast<size_t>(w);
  }
}

}  // namespace

void write_file_atomically(const std::string& path, const std::string& bytes, int64_t fail_after) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  fs::create_directories(dir);
  const std::string tmp = (dir / ("." + target.filename().string() + ".tmp-" + std::to_string(::getpid()))).string();
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  AGILENN_CHECK(fd >= 0, "cannot create '" << tmp << "': " << std::strerror(errno));
  try {
    const size_t n = fail_after >= 0 ? std::min(bytes.size(), static_cast<size_t>(fail_after)) : bytes.size();
    write_all(fd, bytes.data(), n, tmp);
    AGILENN_CHECK(fail_after < 0, "write of '" << path << "' interrupted after " << n << " bytes (test hook)");
    AGILENN_CHECK(::fsync(fd) == 0, "fsync of '" << tmp << "' failed: " << std::strerror(errno));
  } catch (...) {
    ::close(fd);
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
  AGILENN_CHECK(::close(fd) == 0, "closing '" << tmp << "' failed: " << std::strerror(errno));
  std::error_code ec;
  fs::rename(tmp, target, ec);
  if (ec) {
    fs::remove(tmp, ec);
    AGILENN_THROW("cannot rename '" << tmp << "' to '" << path << "'");
  }
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

void save_checkpoint(const std::string& path, const Checkpoint& ckpt) {
  nlohmann::json header = nlohmann::json::object();
  size_t offset = 0;
  for (const auto& [name, t] : ckpt.tensors) {
    AGILENN_CHECK(t.device() == Device::cpu, "checkpoint tensor '" << name << "' must be on the host");
    header[name] = {{"dtype", safetensors_dtype(t.dtype())}, {"shape", t.shape()}, {"data_offsets", {offset, offset + t.nbytes()}}};
    offset += t.nbytes();
  }
  std::string data;
  data.reserve(offset);
  for (const auto& [name, t] : ckpt.tensors) data.append(static_cast<const char*>(t.raw()), t.nbytes());
  header["__metadata__"] = {{"format", "agilenn"},
                            {"agilenn", ckpt.metadata.dump()},
                            {"crc32", hex_crc(crc_of(data.data(), data.size()))},
                            {"file_crc32", hex_crc(0)}};
  std::string json = header.dump();
  json.append((8 - json.size() % 8) % 8, ' ');  // keep the data section 8-byte aligned
  std::string bytes(8, '\0');
  const uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) bytes[static_cast<size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
  bytes += json;
  bytes += data;
  const size_t at = file_crc_position(bytes, 8 + n, path);
  bytes.replace(at, 8, hex_crc(crc_of(bytes.data(), bytes.size())));
  write_file_atomically(path, bytes);
}

namespace {


// Bytes per element of a safetensors dtype name; 0 for a name the format does not have.
size_t element_bytes(const std::string& dtype) {
  static const std::map<std::string, size_t> sizes{
      {"F64", 8}, {"I64", 8}, {"U64", 8}, {"F32", 4}, {"I32", 4}, {"U32", 4}, {"F16", 2}, {"BF16", 2},
      {"I16", 2}, {"U16", 2}, {"I8", 1},  {"U8", 1},  {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1}};
  const auto it = sizes.find(dtype);
  return it == sizes.end() ? 0 : it->second;
}

// One tensor entry of a safetensors header, checked against the file's data section.
struct Entry {
  std::string name, dtype;
  Shape shape;
  const char* data;
  size_t bytes;
};

// The header of a safetensors file and its entries (every one checked: typed shape and
// offsets, inside the data, the size its dtype and shape need; together they cover the
// data exactly); errors name the file and the tensor.
struct Parsed {
  nlohmann::json header;
  std::vector<Entry> entries;
  size_t data_begin = 0;
};

Parsed parse_safetensors(const std::string& bytes, const std::string& path) {
  AGILENN_CHECK(bytes.size() >= 8, "'" << path << "' is truncated: " << bytes.size() << " bytes, no header");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[static_cast<size_t>(i)]);
  AGILENN_CHECK(n <= bytes.size() - 8, "'" << path << "' is truncated: header of " << n << " bytes, file of "
                                           << bytes.size());
  Parsed p;
  try {
    p.header = nlohmann::json::parse(bytes.substr(8, n));
  } catch (const std::exception& e) {
    AGILENN_THROW("'" << path << "' has a corrupt header: " << e.what());
  }
  AGILENN_CHECK(p.header.is_object(), "'" << path << "' has a corrupt header: not a JSON object");
  p.data_begin = 8 + n;
  const size_t data_size = bytes.size() - p.data_begin;
  size_t covered = 0;
  for (const auto& [name, entry] : p.header.items()) {
    if (name == "__metadata__") continue;
    try {
      const std::string dtype = entry.at("dtype").get<std::string>();
      const size_t element = element_bytes(dtype);
      AGILENN_CHECK(element > 0, "'" << path << "': tensor '" << name << "' has unknown dtype '" << dtype << "'");
      const nlohmann::json& dims = entry.at("shape");
      const nlohmann::json& offsets = entry.at("data_offsets");
      // Typed before they are read: nlohmann converts a float to an integer unchecked.
      AGILENN_CHECK(dims.is_array() && std::all_of(dims.begin(), dims.end(), [](const auto& d) { return d.is_number_integer(); }),
                    "'" << path << "': tensor '" << name << "' has a shape that is not a list of integers");
      AGILENN_CHECK(offsets.is_array() && offsets.size() == 2 && offsets[0].is_number_unsigned() &&
                        offsets[1].is_number_unsigned(),
                    "'" << path << "': tensor '" << name << "' has data_offsets that are not two byte offsets");
      const Shape shape = dims.get<Shape>();
      const size_t begin = offsets[0].get<size_t>(), end = offsets[1].get<size_t>();
      size_t want = 0;
      try {
        want = bytes_of(shape, DType::u8);
        AGILENN_CHECK(want <= std::numeric_limits<size_t>::max() / element, "its size overflows");
        want *= element;
      } catch (const Error& e) {
        AGILENN_THROW("'" << path << "': tensor '" << name << "': " << e.what());
      }
      AGILENN_CHECK(begin <= end && end <= data_size, "'" << path << "': tensor '" << name << "' lies outside the file (bytes "
                                                          << begin << ".." << end << " of " << data_size
                                                          << "); the file is truncated");
      AGILENN_CHECK(end - begin == want, "'" << path << "': tensor '" << name << "' has " << end - begin
                                             << " bytes, its shape " << shape_str(shape) << " needs " << want);
      p.entries.push_back({name, dtype, shape, bytes.data() + p.data_begin + begin, want});
      covered += want;
    } catch (const nlohmann::json::exception& e) {
      AGILENN_THROW("'" << path << "': entry '" << name << "' is malformed: " << e.what());
    }
  }
  AGILENN_CHECK(covered == data_size, "'" << path << "': tensors cover " << covered << " of " << data_size << " data bytes");
  return p;
}

Tensor copy_of(const Entry& e, DType t) {
  Tensor tensor = Tensor::zeros(e.shape, t);
  std::memcpy(tensor.raw(), e.data, e.bytes);
  return tensor;
}

// IEEE binary16 and bfloat16 bit patterns, widened exactly to float.
float half_to_float(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16, exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu;
  float magnitude;
  if (exponent == 0) {
    magnitude = std::ldexp(static_cast<float>(mantissa), -24);
  } else if (exponent == 31) {
    magnitude = mantissa == 0 ? std::numeric_limits<float>::infinity() : std::numeric_limits<float>::quiet_NaN();
  } else {
    magnitude = std::ldexp(static_cast<float>(mantissa | 0x400u), static_cast<int>(exponent) - 25);
  }
  return sign ? -magnitude : magnitude;
}

float bfloat16_to_float(uint16_t b) {
  const uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

Tensor widened(const Entry& e, float (*widen)(uint16_t)) {
  Tensor tensor = Tensor::zeros(e.shape, DType::f32);
  float* out = tensor.data<float>();
  for (size_t i = 0; i < e.bytes / 2; ++i) {
    uint16_t v;
    std::memcpy(&v, e.data + 2 * i, 2);  // safetensors is little-endian, as every x86 and Arm host here
    out[i] = widen(v);
  }
  return tensor;
}

}  // namespace

std::string read_file(const std::string& path, const char* what) {
  AGILENN_CHECK(!std::filesystem::is_directory(path), what << " '" << path << "' is a directory, not a file");
  std::ifstream in(path, std::ios::binary);
  AGILENN_CHECK(in, "cannot open " << what << " '" << path << "'");
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

SafetensorsFile read_safetensors(const std::string& path) {
  const std::string bytes = read_file(path, "safetensors file");
  const Parsed p = parse_safetensors(bytes, path);
  SafetensorsFile file;
  for (const Entry& e : p.entries) {
    if (e.dtype == "F32" || e.dtype == "F64" || e.dtype == "I32" || e.dtype == "U8") {
      file.tensors.emplace(e.name, copy_of(e, parse_dtype(e.dtype, path, e.name)));
    } else if (e.dtype == "F16" || e.dtype == "BF16") {
      file.tensors.emplace(e.name, widened(e, e.dtype == "F16" ? half_to_float : bfloat16_to_float));
    } else {
      file.other_dtypes.emplace(e.name, e.dtype);
    }
  }
  return file;
}

Checkpoint load_checkpoint(const std::string& path) {
  const std::string bytes = read_file(path, "checkpoint");
  const Parsed p = parse_safetensors(bytes, path);
  Checkpoint ckpt;
  for (const Entry& e : p.entries) ckpt.tensors.emplace(e.name, copy_of(e, parse_dtype(e.dtype, path, e.name)));
  const auto meta = p.header.find("__metadata__");
  AGILENN_CHECK(meta != p.header.end() && meta->is_object() && meta->contains("crc32") && meta->contains("agilenn"),
                "'" << path << "' is not an agilenn checkpoint (no __metadata__ with crc32 and agilenn)");
  const size_t base = p.data_begin, data_size = bytes.size() - base;
  try {
    AGILENN_CHECK(meta->at("crc32").get<std::string>() == hex_crc(crc_of(bytes.data() + base, data_size)),
                  "'" << path << "' fails its checksum: tensor data is corrupt");
    // Files written since 2026-11-30 also carry a checksum of the whole file (header and
    // metadata too), computed with its own 8 digits as zeros.
    if (meta->contains("file_crc32")) {
      std::string zeroed = bytes;
      zeroed.replace(file_crc_position(bytes, base, path), 8, hex_crc(0));
      AGILENN_CHECK(meta->at("file_crc32").get<std::string>() == hex_crc(crc_of(zeroed.data(), zeroed.size())),
                    "'" << path << "' fails its checksum: the header or the metadata is corrupt");
    }
    ckpt.metadata = nlohmann::json::parse(meta->at("agilenn").get<std::string>());
    check_metadata_numbers(ckpt.metadata, path);
  } catch (const nlohmann::json::exception& e) {
    AGILENN_THROW("'" << path << "' has corrupt metadata: " << e.what());
  }
  return ckpt;
}

void check_against(const Checkpoint& ckpt, const nn::ParamSet& expected, const std::string& path) {
  for (const nn::ParamInfo& info : expected.all()) {
    auto it = ckpt.tensors.find(info.name);
    AGILENN_CHECK(it != ckpt.tensors.end(), "'" << path << "' has no tensor '" << info.name << "'");
    AGILENN_CHECK(it->second.shape() == info.shape, "'" << path << "': tensor '" << info.name << "' is "
                                                        << shape_str(it->second.shape()) << ", the model needs "
                                                        << shape_str(info.shape));
  }
}

}  // namespace agilenn::io
