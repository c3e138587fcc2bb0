// SVHN's MATLAB level-5 MAT-files (compressed elements included): read_svhn_mat.
#include "engine/data/dataset.h"
#include "tests/fuzz/fuzz_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace agilenn;
  const auto path = fuzz::scratch() / "test_32x32.mat";
  fuzz::write_file(path, std::string_view(reinterpret_cast<const char*>(data), size));
  fuzz::expect_only_errors([&] { data::read_svhn_mat(path.string(), "fuzz"); });
  return 0;
}
