// IDX image and label files (raw or gzip): read_idx.
#include "engine/data/dataset.h"
#include "tests/fuzz/fuzz_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace agilenn;
  const auto [images, labels] = fuzz::split(data, size);
  const auto dir = fuzz::scratch();
  fuzz::write_file(dir / "images-idx3-ubyte", images);
  fuzz::write_file(dir / "labels-idx1-ubyte", labels);
  fuzz::expect_only_errors([&] {
    data::read_idx((dir / "images-idx3-ubyte").string(), (dir / "labels-idx1-ubyte").string(), 10, "fuzz");
  });
  return 0;
}
