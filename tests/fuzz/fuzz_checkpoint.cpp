// safetensors checkpoints (header JSON, offsets, dtypes, shapes, metadata, checksums):
// load_checkpoint.
#include "engine/io/checkpoint.h"
#include "tests/fuzz/fuzz_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace agilenn;
  const auto path = fuzz::scratch() / "latest.safetensors";
  fuzz::write_file(path, std::string_view(reinterpret_cast<const char*>(data), size));
  fuzz::expect_only_errors([&] { io::load_checkpoint(path.string()); });
  return 0;
}
