#include "engine/data/loader.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "engine/core/error.h"
#include "kernels/cpu/resize.h"

namespace agilenn::data {

void check_dataset(const std::string& dataset) {
  static const std::vector<std::string> known{"cifar10", "cifar100",      "svhn",     "tiny-imagenet",
                                              "mnist",   "fashion-mnist", "synthetic"};
  if (std::find(known.begin(), known.end(), dataset) != known.end()) return;
  std::ostringstream names;
  for (size_t i = 0; i < known.size(); ++i) names << (i > 0 ? ", " : "") << known[i];
  AGILENN_THROW("unknown dataset '" << dataset << "' (" << names.str() << ")");
}

ImageDataset first_samples(ImageDataset ds, int64_t n) {
  if (n <= 0 || n >= ds.size()) return ds;
  ds.labels.resize(static_cast<size_t>(n));
  ds.pixels.resize(static_cast<size_t>(n * ds.image_bytes()));
  return ds;
}

int64_t dataset_classes(const std::string& dataset) {
  check_dataset(dataset);
  if (dataset == "cifar100") return 100;
  if (dataset == "tiny-imagenet") return 200;
  return 10;
}

void check_normalization(const std::string& normalization) {
  AGILENN_CHECK(normalization == "dataset" || normalization == "signed" || normalization == "imagenet",
                "unknown normalization '" << normalization << "' (dataset, signed, imagenet)");
}

Preprocess Preprocess::for_dataset(const std::string& dataset, int64_t output_size, bool train,
                                   const std::string& normalization) {
  check_dataset(dataset);
  check_normalization(normalization);
  Preprocess p;
  p.output_size = output_size;
  auto set = [&p](std::array<float, 3> channel_mean, std::array<float, 3> channel_std) {
    p.mean = channel_mean;
    p.std = channel_std;
  };
  if (dataset == "cifar10") {
    set({0.4914f, 0.4822f, 0.4465f}, {0.2023f, 0.1994f, 0.2010f});
  } else if (dataset == "cifar100") {
    set({0.507f, 0.487f, 0.441f}, {0.267f, 0.256f, 0.276f});
  } else if (dataset == "svhn" || dataset == "tiny-imagenet") {
    set({0.5f, 0.5f, 0.5f}, {0.5f, 0.5f, 0.5f});  // 2x − 1
  } else if (dataset == "fashion-mnist") {
    set({0.2860f, 0.2860f, 0.2860f}, {0.3530f, 0.3530f, 0.3530f});
  } else if (dataset == "mnist") {
    set({0.1307f, 0.1307f, 0.1307f}, {0.3081f, 0.3081f, 0.3081f});
  } else if (dataset == "synthetic") {
    set({0.5f, 0.5f, 0.5f}, {0.2f, 0.2f, 0.2f});
  }
  if (normalization == "signed") set({0.5f, 0.5f, 0.5f}, {0.5f, 0.5f, 0.5f});
  if (normalization == "imagenet") set({0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f});
  if (train) {
    // The seed flips and pad-4-crops CIFAR and SVHN and only flips Tiny-ImageNet; digits
    // are not flipped; 28-pixel images get a 2-pixel pad.
    p.flip = dataset != "mnist";
    p.pad = dataset == "tiny-imagenet" ? 0 : (dataset == "mnist" || dataset == "fashion-mnist") ? 2 : 4;
  }
  return p;
}

Loader::Loader(const ImageDataset& ds, int64_t batch, Preprocess pp, uint64_t seed, bool shuffle, int rank, int world)
    : ds_(ds), batch_(batch), pp_(pp), seed_(seed), shuffle_(shuffle), rank_(rank), world_(world) {
  AGILENN_CHECK(batch > 0 && world > 0 && rank >= 0 && rank < world, "bad batch/rank/world " << batch << "/" << rank << "/"
                                                                                            << world);
  AGILENN_CHECK(ds.size() >= batch * world, ds.name << " has " << ds.size() << " samples, fewer than one global batch of "
                                                    << batch * world);
}

Loader::~Loader() {
  if (worker_.joinable()) worker_.join();
}

int64_t Loader::batches_per_epoch() const { return ds_.size() / (batch_ * world_); }

int64_t Loader::batches_covering() const { return (ds_.size() + batch_ * world_ - 1) / (batch_ * world_); }

int64_t Loader::sample_index(int64_t epoch, int64_t position) const {
  if (!shuffle_) return position;
  // A Fisher–Yates permutation per epoch, cached for the last epoch asked.
  thread_local uint64_t cached_seed = 0;
  thread_local int64_t cached_epoch = -1;
  thread_local std::vector<int64_t> perm;
  if (cached_epoch != epoch || cached_seed != seed_ || static_cast<int64_t>(perm.size()) != ds_.size()) {
    perm.resize(static_cast<size_t>(ds_.size()));
    std::iota(perm.begin(), perm.end(), 0);
    std::mt19937_64 rng(seed_ * 0x9e3779b97f4a7c15ULL + static_cast<uint64_t>(epoch));
    for (size_t i = perm.size(); i > 1; --i) std::swap(perm[i - 1], perm[std::uniform_int_distribution<size_t>(0, i - 1)(rng)]);
    cached_epoch = epoch;
    cached_seed = seed_;
  }
  return perm[static_cast<size_t>(position)];
}

Loader::LoadedBatch Loader::get(int64_t epoch, int64_t index) const {
  const int64_t h = ds_.height, w = ds_.width, c = ds_.channels;
  Tensor images = Tensor::zeros({batch_, h, w, 3}, DType::f32);
  Tensor labels = Tensor::zeros({batch_}, DType::i32);
  float* img = images.data<float>();
  int32_t* lab = labels.data<int32_t>();
  const int64_t first = (index * world_ + rank_) * batch_;
  int64_t valid = 0;
  for (int64_t r = 0; r < batch_; ++r) {
    int64_t position = first + r;
    if (position < ds_.size()) ++valid;
    else position %= ds_.size();  // padding rows of a covering batch
    const int64_t sample = sample_index(epoch, position);
    lab[r] = ds_.labels[static_cast<size_t>(sample)];
    std::mt19937_64 rng(seed_ ^ (static_cast<uint64_t>(epoch) << 40) ^ static_cast<uint64_t>(sample) * 0x2545f4914f6cdd1dULL);
    const bool flip = pp_.flip && std::uniform_int_distribution<int>(0, 1)(rng) == 1;
    const int64_t dy = pp_.pad ? std::uniform_int_distribution<int64_t>(0, 2 * pp_.pad)(rng) - pp_.pad : 0;
    const int64_t dx = pp_.pad ? std::uniform_int_distribution<int64_t>(0, 2 * pp_.pad)(rng) - pp_.pad : 0;
    const uint8_t* src = ds_.image(sample);
    float* dst = img + r * h * w * 3;
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x) {
        // Crop of the padded image at offset (pad+dy, pad+dx); outside the image is 0.
        const int64_t sy = y + dy, sx0 = x + dx, sx = flip ? w - 1 - sx0 : sx0;
        const bool inside = sy >= 0 && sy < h && sx0 >= 0 && sx0 < w;
        for (int64_t k = 0; k < 3; ++k) {
          const float v = inside ? static_cast<float>(src[(sy * w + sx) * c + (c == 1 ? 0 : k)]) / 255.0f : 0.0f;
          dst[(y * w + x) * 3 + k] = (v - pp_.mean[static_cast<size_t>(k)]) / pp_.std[static_cast<size_t>(k)];
        }
      }
  }
  if (pp_.output_size > 0 && (pp_.output_size != ds_.height || pp_.output_size != ds_.width))
    images = cpu::resize_bilinear(images, pp_.output_size, pp_.output_size);
  return {{images, labels}, valid};
}

Loader::LoadedBatch Loader::next(int64_t epoch, int64_t index) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return !busy_; });
  if (worker_.joinable()) worker_.join();
  LoadedBatch out = ahead_key_ == std::make_pair(epoch, index) && ahead_ ? std::move(*ahead_) : get(epoch, index);
  ahead_.reset();
  // Prefetch the following batch (wrapping into the next epoch).
  int64_t ne = epoch, ni = index + 1;
  if (ni >= batches_per_epoch()) ne += 1, ni = 0;
  ahead_key_ = std::make_pair(ne, ni);
  busy_ = true;
  worker_ = std::thread([this, ne, ni] {
    LoadedBatch b = get(ne, ni);
    std::lock_guard<std::mutex> g(mu_);
    ahead_ = std::move(b);
    busy_ = false;
    cv_.notify_all();
  });
  return out;
}

ImageDataset synthetic_images(int64_t classes, int64_t size, int64_t side, uint64_t seed, int64_t first) {
  const SyntheticDataset src(classes, side, side, 3, first + size, seed);
  const Batch b = src.batch(first, size);
  ImageDataset ds{"synthetic", side, side, 3, classes, std::vector<uint8_t>(static_cast<size_t>(b.images.numel())), {}};
  const float* p = b.images.data<float>();
  for (size_t i = 0; i < ds.pixels.size(); ++i)
    ds.pixels[i] = static_cast<uint8_t>(std::clamp(std::lround(127.5 + 40.0 * p[i]), 0L, 255L));
  for (int64_t i = 0; i < size; ++i) ds.labels.push_back(b.labels.data<int32_t>()[i]);
  return ds;
}

ImageDataset load_dataset(const std::string& dataset, const std::string& dir, Split split) {
  check_dataset(dataset);
  if (dataset == "fashion-mnist")
    return read_mnist_dir(dir.empty() ? "/usr/share/datasets/fashion-mnist" : dir, split, dataset);
  if (dataset == "mnist") return read_mnist_dir(dir, split, dataset);
  if (dataset == "cifar10") return read_cifar10(dir, split);
  if (dataset == "cifar100") return read_cifar100(dir, split, true);
  if (dataset == "svhn") return read_svhn(dir, split);
  if (dataset == "tiny-imagenet") return read_tiny_imagenet(dir, split);
  // One problem (the class patterns follow the seed), two disjoint sets of its samples.
  if (dataset == "synthetic")
    return split == Split::train ? synthetic_images(dataset_classes(dataset), 2048, 32, 1)
                                 : synthetic_images(dataset_classes(dataset), 512, 32, 1, 2048);
  AGILENN_THROW("no reader for dataset '" << dataset << "'");
}

}  // namespace agilenn::data
