// Tiny-ImageNet's validation split: wnids.txt, val/val_annotations.txt and the JPEG they
// name (decoded by libjpeg): read_tiny_imagenet. The input is cut into the two text files
// and one image.
#include "engine/data/dataset.h"
#include "tests/fuzz/fuzz_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace agilenn;
  const auto [text, jpeg] = fuzz::split(data, size);
  const size_t newline = text.find('\n');
  const std::string_view wnids = text.substr(0, newline == std::string_view::npos ? text.size() : newline + 1);
  const std::string_view annotations = text.substr(wnids.size());
  const auto dir = fuzz::scratch() / "tiny-imagenet";
  fuzz::write_file(dir / "wnids.txt", wnids);
  fuzz::write_file(dir / "val" / "val_annotations.txt", annotations);
  fuzz::write_file(dir / "val" / "images" / "val_0.JPEG", jpeg);
  fuzz::expect_only_errors([&] { data::read_tiny_imagenet(dir.string(), data::Split::test); });
  return 0;
}
