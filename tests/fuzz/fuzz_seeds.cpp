// Writes the fuzz targets' seed inputs: small valid files in each official format, made as
// the reader tests make theirs (and a checkpoint by save_checkpoint itself). Usage:
// fuzz_seeds DIR, then DIR/<target>/ holds each target's seeds. The Tiny-ImageNet seed's
// JPEG comes from tools/fuzz.sh (Pillow), appended to the text files written here.
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "engine/io/checkpoint.h"

namespace {

namespace fs = std::filesystem;
using Bytes = std::string;

void put_be32(Bytes& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<char>(v >> s));
}

Bytes gzipped(const Bytes& raw) {
  z_stream zs{};
  deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
  Bytes out(deflateBound(&zs, static_cast<uLong>(raw.size())) + 32, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(raw.data()));
  zs.avail_in = static_cast<uInt>(raw.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

// fuzz::split's layout: a 2-byte cut, then the two parts.
Bytes two_parts(const Bytes& a, const Bytes& b) {
  Bytes out;
  out.push_back(static_cast<char>(a.size() >> 8));
  out.push_back(static_cast<char>(a.size() & 0xff));
  return out + a + b;
}

void write(const fs::path& file, const Bytes& bytes) {
  fs::create_directories(file.parent_path());
  std::ofstream(file, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: fuzz_seeds DIR\n";
    return 2;
  }
  const fs::path dir = argv[1];
  Bytes images, labels;
  put_be32(images, 0x00000803), put_be32(images, 2), put_be32(images, 3), put_be32(images, 3);
  for (int i = 0; i < 18; ++i) images.push_back(static_cast<char>(i * 13));
  put_be32(labels, 0x00000801), put_be32(labels, 2);
  labels += Bytes{'\x07', '\x02'};
  write(dir / "idx" / "raw", two_parts(images, labels));
  write(dir / "idx" / "gzip", two_parts(gzipped(images), gzipped(labels)));

  Bytes cifar;
  for (int r = 0; r < 2; ++r) {
    cifar += Bytes{static_cast<char>(r + 3), static_cast<char>(r + 40)};
    for (int p = 0; p < 3072; ++p) cifar.push_back(static_cast<char>(p % 251));
  }
  write(dir / "cifar" / "cifar100", cifar);
  write(dir / "cifar" / "cifar10", cifar.substr(1, 3073));

  // A MAT v5 header: 116 bytes of text, subsystem offset, version 0x0100, 'IM'.
  Bytes mat = "MATLAB 5.0 MAT-file, Platform: GLNXA64, Created on: Thu Jan  1 00:00:00 2015";
  mat.resize(124, ' ');
  mat += Bytes{'\x00', '\x01', 'I', 'M'};
  write(dir / "svhn" / "header", mat);

  write(dir / "tiny_imagenet" / "text", "n01443537\nval_0.JPEG\tn01443537\t0\t0\t63\t63\n");

  agilenn::io::Checkpoint ck;
  ck.tensors["a.weight"] = agilenn::Tensor::from_vector({2, 3}, {1, 2, 3, 4, 5, 6}, agilenn::DType::f32);
  ck.tensors["b.count"] = agilenn::Tensor::from_vector({2}, {7, -8}, agilenn::DType::i32);
  ck.metadata = {{"step", 12}, {"config", {{"mode", "agilenn"}}}};
  agilenn::io::save_checkpoint((dir / "checkpoint" / "small.safetensors").string(), ck);
  return 0;
}
