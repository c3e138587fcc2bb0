// What the fuzz targets share: the input written where a reader expects a file (a reader
// is fuzzed through its public entry point, file name and all), and the one outcome a
// reader may have besides success, an agilenn::Error. Anything else (another exception,
// a crash, a leak, undefined behaviour, an allocation past libFuzzer's limit) is a finding.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "engine/core/error.h"

namespace agilenn::fuzz {

// A directory of this process's own under /dev/shm (or the temp dir), made once.
inline const std::filesystem::path& scratch() {
  static const std::filesystem::path dir = [] {
    const std::filesystem::path base = std::filesystem::exists("/dev/shm") ? "/dev/shm" : std::filesystem::temp_directory_path();
    std::filesystem::path d = base / ("agilenn-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d;
  }();
  return dir;
}

inline void write_file(const std::filesystem::path& path, std::string_view bytes) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Input cut in two at a point its first two bytes choose (so the fuzzer moves the cut).
inline std::pair<std::string_view, std::string_view> split(const uint8_t* data, size_t size) {
  if (size < 2) return {{}, {}};
  const size_t rest = size - 2, cut = (size_t{data[0]} << 8 | data[1]) % (rest + 1);
  const char* p = reinterpret_cast<const char*>(data) + 2;
  return {std::string_view(p, cut), std::string_view(p + cut, rest - cut)};
}

template <class F>
void expect_only_errors(F&& read) {
  try {
    read();
  } catch (const Error&) {
  }
}

}  // namespace agilenn::fuzz
