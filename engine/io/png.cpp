#include "engine/io/png.h"

#include <png.h>

#include <csetjmp>
#include <cstdio>
#include <new>

#include "engine/core/error.h"
#include "engine/io/checkpoint.h"

namespace agilenn::io {
namespace {

constexpr size_t kErrorBytes = 256;

// No exception may cross libpng's C frames: running out of memory becomes a libpng error.
void append(png_structp png, png_bytep data, png_size_t n) {
  auto* out = static_cast<std::vector<uint8_t>*>(png_get_io_ptr(png));
  try {
    out->insert(out->end(), data, data + n);
  } catch (const std::bad_alloc&) {
    png_error(png, "out of memory");
  }
}

void no_flush(png_structp) {}

// libpng reports an error by longjmp to the setjmp of write_image; the message is kept
// for the exception thrown after it.
[[noreturn]] void keep_error(png_structp png, png_const_charp message) {
  auto* error = static_cast<char*>(png_get_error_ptr(png));
  std::snprintf(error, kErrorBytes, "%s", message);
  png_longjmp(png, 1);
}

void ignore_warning(png_structp, png_const_charp) {}

// No C++ object lives in this frame, so the longjmp out of libpng skips no destructor.
bool write_image(png_structp png, png_infop info, const Image& image, std::vector<uint8_t>* out) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_write_fn(png, out, append, no_flush);
  png_set_IHDR(png, info, static_cast<png_uint_32>(image.width), static_cast<png_uint_32>(image.height), 8,
               image.channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int64_t y = 0; y < image.height; ++y) png_write_row(png, image.at(0, y));
  png_write_end(png, nullptr);
  return true;
}

}  // namespace

std::vector<uint8_t> encode_png(const Image& image) {
  AGILENN_CHECK(image.width > 0 && image.height > 0 && (image.channels == 1 || image.channels == 3) &&
                    image.pixels.size() == static_cast<size_t>(image.width * image.height * image.channels),
                "png: bad image " << image.width << "x" << image.height << "x" << image.channels << " with "
                                  << image.pixels.size() << " bytes");
  char error[kErrorBytes] = "unknown error";
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, error, keep_error, ignore_warning);
  AGILENN_CHECK(png, "png: out of memory");
  png_infop info = png_create_info_struct(png);
  std::vector<uint8_t> out;
  const bool allocated = info != nullptr;
  const bool ok = allocated && write_image(png, info, image, &out);
  png_destroy_write_struct(&png, &info);
  AGILENN_CHECK(ok, "png: " << (allocated ? error : "out of memory"));
  return out;
}

void write_png(const std::string& path, const Image& image) {
  const std::vector<uint8_t> bytes = encode_png(image);
  write_file_atomically(path, std::string(bytes.begin(), bytes.end()));
}

}  // namespace agilenn::io
