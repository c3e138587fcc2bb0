// Datasets as the official files hold them: uint8 images [N,H,W,C] and int32 labels,
// read whole into memory. Every reader validates sizes, record counts and label ranges,
// and names the file and the record on any error.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/core/tensor.h"

namespace agilenn::data {

struct ImageDataset {
  std::string name;               // e.g. "cifar10/train"
  int64_t height = 0, width = 0, channels = 0;
  int64_t classes = 0;
  std::vector<uint8_t> pixels;    // N·H·W·C, NHWC
  std::vector<int32_t> labels;    // N, each in [0, classes)

  int64_t size() const { return static_cast<int64_t>(labels.size()); }
  int64_t image_bytes() const { return height * width * channels; }
  const uint8_t* image(int64_t i) const { return pixels.data() + i * image_bytes(); }
  // Throws naming the dataset when sizes or labels are inconsistent.
  void validate() const;
};

enum class Split { train, test };
const char* split_name(Split s);

// CIFAR-10 binary version: data_batch_{1..5}.bin / test_batch.bin in `dir`; records of
// 1 label byte + 3072 bytes (1024 R, 1024 G, 1024 B, row-major 32×32).
ImageDataset read_cifar10(const std::string& dir, Split split);
// CIFAR-100 binary version: train.bin / test.bin; records of coarse label, fine label,
// 3072 bytes. `fine` selects the 100 fine labels (else the 20 coarse ones).
ImageDataset read_cifar100(const std::string& dir, Split split, bool fine = true);
// MNIST / Fashion-MNIST IDX files, gzip-compressed or not (by content, not by name):
// images magic 0x00000803 [N,28,28], labels magic 0x00000801 [N].
ImageDataset read_idx(const std::string& images_path, const std::string& labels_path, int64_t classes,
                      const std::string& name);
// {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] in `dir`.
ImageDataset read_mnist_dir(const std::string& dir, Split split, const std::string& name);
// SVHN cropped digits: train_32x32.mat / test_32x32.mat in `dir`, MATLAB level-5 MAT-files (compressed
// or not) holding X (32×32×3×N) and y (N×1, digit 0 written as 10, mapped to label 0).
ImageDataset read_svhn(const std::string& dir, Split split);
ImageDataset read_svhn_mat(const std::string& path, const std::string& name);
// Tiny-ImageNet-200 folder tree in `dir`: labels by line of wnids.txt; train/<wnid>/images/*.JPEG sorted by
// name, or (Split::test) the official val/ split in the order of val/val_annotations.txt. 64×64 RGB, grey
// images replicated to 3 channels.
ImageDataset read_tiny_imagenet(const std::string& dir, Split split);

// Reads a whole file, gunzipping it when it starts with the gzip magic.
std::vector<uint8_t> read_file_maybe_gzip(const std::string& path);

}  // namespace agilenn::data
