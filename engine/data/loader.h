// Turns an ImageDataset into training batches: the seed's augmentation (random flip,
// pad + random crop), per-dataset normalisation, then a bilinear resize to the model's
// input size. Everything is a pure function of (seed, epoch, position), so a resumed run
// sees exactly the batches an uninterrupted one would; a worker thread prepares the next
// batch while the current step runs.
#pragma once

#include <array>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "engine/data/dataset.h"
#include "engine/data/synthetic.h"

namespace agilenn::data {

struct Preprocess {
  std::array<float, 3> mean{0, 0, 0}, std{1, 1, 1};  // on pixels scaled to [0, 1]
  bool flip = false;
  int64_t pad = 0;  // zero padding (in [0,1] units, before normalising) for the random crop
  int64_t output_size = 0;  // bilinear resize target (square); 0 keeps the stored size

  // The seed's preprocessing for `dataset` (cifar10, cifar100, svhn, tiny-imagenet,
  // mnist, fashion-mnist, synthetic); augmentation only when `train`. `normalization`:
  // "dataset" (its own mean and std, as the seed's AgileNN), or what pretrained weights
  // expect: "signed" (2x − 1, Keras' EfficientNetV2) or "imagenet" (torchvision's mean
  // and std).
  static Preprocess for_dataset(const std::string& dataset, int64_t output_size, bool train,
                                const std::string& normalization = "dataset");
};

// Throws, naming the choices, unless `normalization` is one Preprocess::for_dataset takes.
void check_normalization(const std::string& normalization);

class Loader {
 public:
  // Rank `rank` of `world` takes rows [rank·batch, (rank+1)·batch) of each global batch
  // of batch·world samples, so N ranks together see exactly what one rank with N·batch sees.
  Loader(const ImageDataset& ds, int64_t batch, Preprocess pp, uint64_t seed, bool shuffle, int rank = 0,
         int world = 1);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  // Full global batches per epoch (training drops the remainder: the step's shapes are static).
  int64_t batches_per_epoch() const;
  // Batches covering the whole dataset, the last one padded (see Batch::valid).
  int64_t batches_covering() const;

  struct LoadedBatch {
    Batch batch;
    int64_t valid;  // rows that are real samples; the rest repeat earlier ones
  };
  // Batch `index` of `epoch`, computed now.
  LoadedBatch get(int64_t epoch, int64_t index) const;
  // The same, from the worker thread, which then starts on (epoch, index + 1).
  LoadedBatch next(int64_t epoch, int64_t index);

 private:
  int64_t sample_index(int64_t epoch, int64_t position) const;

  const ImageDataset& ds_;
  int64_t batch_;
  Preprocess pp_;
  uint64_t seed_;
  bool shuffle_;
  int rank_, world_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::thread worker_;
  std::optional<std::pair<int64_t, int64_t>> ahead_key_;
  std::optional<LoadedBatch> ahead_;
  bool busy_ = false;
};

// Samples [first, first + size) of a synthetic dataset as stored uint8 images (see
// SyntheticDataset; its class patterns follow `seed`), for the CLI and tests.
ImageDataset synthetic_images(int64_t classes, int64_t size, int64_t side, uint64_t seed, int64_t first = 0);

// Throws, naming the known datasets, unless `dataset` is one of those load_dataset and
// Preprocess::for_dataset take.
void check_dataset(const std::string& dataset);
// The first `n` samples of `ds` (all of them when n is 0 or at least its size).
ImageDataset first_samples(ImageDataset ds, int64_t n);
// The classes of a dataset load_dataset reads (synthetic: the 10 it makes).
int64_t dataset_classes(const std::string& dataset);

// Loads `dataset` ("fashion-mnist", "cifar10", ...) from `dir` ("" for the default place).
ImageDataset load_dataset(const std::string& dataset, const std::string& dir, Split split);

}  // namespace agilenn::data
