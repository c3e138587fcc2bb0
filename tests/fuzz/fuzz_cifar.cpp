// CIFAR-10 and CIFAR-100 binary test files: read_cifar10, read_cifar100 (fine and coarse).
#include "engine/data/dataset.h"
#include "tests/fuzz/fuzz_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace agilenn;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const auto dir = fuzz::scratch();
  fuzz::write_file(dir / "test_batch.bin", bytes);
  fuzz::write_file(dir / "test.bin", bytes);
  fuzz::expect_only_errors([&] { data::read_cifar10(dir.string(), data::Split::test); });
  fuzz::expect_only_errors([&] { data::read_cifar100(dir.string(), data::Split::test, size % 2 == 0); });
  return 0;
}
