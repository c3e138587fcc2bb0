// Tiny-ImageNet-200 as published: a folder tree of 64×64 JPEGs, decoded with libjpeg.
#include <cstdio>  // before jpeglib.h, which uses FILE without including it

#include <jpeglib.h>

#include <algorithm>
#include <cctype>
#include <csetjmp>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "engine/core/error.h"
#include "engine/data/dataset.h"

namespace agilenn::data {

namespace {

namespace fs = std::filesystem;

constexpr unsigned side = 64, channels = 3;
constexpr size_t image_bytes = size_t{side} * side * channels;

// libjpeg reports errors through callbacks that must not return. They longjmp back into decode_jpeg, which holds
// no C++ objects, so no destructor is skipped; the C++ caller turns the outcome into an Error.
struct JpegErrors {
  jpeg_error_mgr mgr;  // first member: libjpeg hands the callbacks a pointer to it
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

[[noreturn]] void jpeg_fail(j_common_ptr cinfo) {
  JpegErrors* errors = reinterpret_cast<JpegErrors*>(cinfo->err);
  cinfo->err->format_message(cinfo, errors->message);
  std::longjmp(errors->jump, 1);
}

// Warnings include "premature end of JPEG file", which libjpeg would otherwise paper over with grey rows.
void jpeg_message(j_common_ptr cinfo, int level) {
  if (level < 0) jpeg_fail(cinfo);
}

enum class JpegStatus { ok, failed, wrong_geometry };

struct JpegGeometry {
  JDIMENSION width = 0, height = 0;
  int components = 0;
};

// Decodes a side×side RGB or grayscale JPEG into dst as RGB (grey replicated into all three channels).
JpegStatus decode_jpeg(const uint8_t* data, size_t size, uint8_t* dst, JpegErrors& errors, JpegGeometry& geometry) {
  jpeg_decompress_struct cinfo;
  cinfo.err = jpeg_std_error(&errors.mgr);
  errors.mgr.error_exit = jpeg_fail;
  errors.mgr.emit_message = jpeg_message;
  if (setjmp(errors.jump)) {
    jpeg_destroy_decompress(&cinfo);
    return JpegStatus::failed;
  }
  jpeg_create_decompress(&cinfo);
  // IJG libjpeg declares the buffer non-const; libjpeg-turbo does not write it either way.
  jpeg_mem_src(&cinfo, const_cast<uint8_t*>(data), static_cast<unsigned long>(size));
  jpeg_read_header(&cinfo, TRUE);
  geometry = {cinfo.image_width, cinfo.image_height, cinfo.num_components};
  if (cinfo.image_width != side || cinfo.image_height != side ||
      (cinfo.num_components != 1 && cinfo.num_components != 3)) {
    jpeg_destroy_decompress(&cinfo);
    return JpegStatus::wrong_geometry;
  }
  // Grey is replicated by hand: IJG libjpeg before v9 cannot convert grayscale to RGB.
  cinfo.out_color_space = cinfo.num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_start_decompress(&cinfo);
  while (cinfo.output_scanline < cinfo.output_height) {
    uint8_t* row = dst + size_t{cinfo.output_scanline} * side * channels;
    jpeg_read_scanlines(&cinfo, &row, 1);
    if (cinfo.out_color_space == JCS_GRAYSCALE)  // in place, from the right so no grey value is overwritten unread
      for (unsigned x = side; x-- > 0;) std::fill_n(row + x * channels, channels, row[x]);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return JpegStatus::ok;
}

void read_image(const fs::path& file, uint8_t* dst) {
  AGILENN_CHECK(!fs::is_directory(file), "'" << file.string() << "' is a directory, not a JPEG file");
  std::ifstream in(file, std::ios::binary);
  AGILENN_CHECK(in, "cannot open '" << file.string() << "'");
  const std::vector<uint8_t> bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  JpegErrors errors;
  JpegGeometry g;
  switch (decode_jpeg(bytes.data(), bytes.size(), dst, errors, g)) {
    case JpegStatus::ok: return;
    case JpegStatus::failed:
      AGILENN_THROW("'" << file.string() << "' is not a valid JPEG (libjpeg: " << errors.message << ")");
    case JpegStatus::wrong_geometry:
      AGILENN_THROW("'" << file.string() << "' is " << g.width << "×" << g.height << " with " << g.components
                        << " components, expected " << side << "×" << side << " RGB or grayscale");
  }
}

std::vector<std::string> split_tabs(const std::string& line) {
  std::vector<std::string> fields;
  std::istringstream in(line);
  for (std::string f; std::getline(in, f, '\t');) fields.push_back(f);
  return fields;
}

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

// The wnids in label order: label i is the i-th non-blank line of wnids.txt.
std::vector<std::string> read_wnids(const fs::path& file) {
  std::ifstream in(file);
  AGILENN_CHECK(in, "cannot open '" << file.string() << "'");
  std::vector<std::string> wnids;
  std::set<std::string> seen;
  int line_no = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    std::string wnid = trim(line);
    if (wnid.empty()) continue;
    AGILENN_CHECK(seen.insert(wnid).second,
                  "'" << file.string() << "' line " << line_no << ": wnid " << wnid << " listed twice");
    wnids.push_back(std::move(wnid));
  }
  AGILENN_CHECK(!wnids.empty(), "'" << file.string() << "' lists no wnids");
  return wnids;
}

bool is_jpeg_name(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  return ext == ".jpeg" || ext == ".jpg";
}

}  // namespace

ImageDataset read_tiny_imagenet(const std::string& dir, Split split) {
  const fs::path root(dir);
  const std::vector<std::string> wnids = read_wnids(root / "wnids.txt");
  std::vector<std::pair<fs::path, int32_t>> files;
  if (split == Split::train) {
    for (size_t label = 0; label < wnids.size(); ++label) {
      const std::string& wnid = wnids[label];
      const fs::path images = root / "train" / wnid / "images";
      AGILENN_CHECK(fs::is_directory(images), "'" << images.string() << "' is missing (wnid " << wnid << ")");
      std::vector<fs::path> names;
      for (const fs::directory_entry& e : fs::directory_iterator(images))
        if (e.is_regular_file() && is_jpeg_name(e.path())) names.push_back(e.path());
      std::sort(names.begin(), names.end());
      for (fs::path& p : names) files.emplace_back(std::move(p), static_cast<int32_t>(label));
    }
  } else {
    // The official val/ split stands in as the test split; its annotations file is the index, in file order.
    const fs::path annotations = root / "val" / "val_annotations.txt";
    std::ifstream in(annotations);
    AGILENN_CHECK(in, "cannot open '" << annotations.string() << "'");
    std::map<std::string, int32_t> labels;
    for (size_t i = 0; i < wnids.size(); ++i) labels.emplace(wnids[i], static_cast<int32_t>(i));
    std::set<std::string> seen;
    int line_no = 0;
    for (std::string line; std::getline(in, line);) {
      ++line_no;
      if (trim(line).empty()) continue;
      const std::vector<std::string> f = split_tabs(trim(line));
      AGILENN_CHECK(f.size() == 6, "'" << annotations.string() << "' line " << line_no << ": " << f.size()
                                       << " tab-separated fields, expected 6 (file, wnid, box)");
      const auto it = labels.find(f[1]);
      AGILENN_CHECK(it != labels.end(), "'" << annotations.string() << "' line " << line_no << ": unknown wnid "
                                            << f[1] << " for " << f[0]);
      AGILENN_CHECK(seen.insert(f[0]).second,
                    "'" << annotations.string() << "' line " << line_no << ": " << f[0] << " annotated twice");
      files.emplace_back(root / "val" / "images" / f[0], it->second);
    }
  }

  ImageDataset ds{std::string("tiny-imagenet/") + split_name(split), side, side, channels,
                  static_cast<int64_t>(wnids.size()), std::vector<uint8_t>(files.size() * image_bytes), {}};
  ds.labels.reserve(files.size());
  for (size_t i = 0; i < files.size(); ++i) {
    read_image(files[i].first, ds.pixels.data() + i * image_bytes);
    ds.labels.push_back(files[i].second);
  }
  ds.validate();
  return ds;
}

}  // namespace agilenn::data
