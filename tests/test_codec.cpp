// The remote codes' entropy coder: the C99 encoder (engine/export/agilenn_codec.c) and the
// engine's decoder round-trip every stream, the stream's size is the model's cross-entropy
// plus the coder's few bytes of overhead, and a damaged stream or table is refused.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <random>

#include "engine/export/codec.h"
#include "tests/test_util.h"

namespace agilenn::exporting {
namespace {

using testing::error_of;
using ::testing::HasSubstr;

// Codes of `images` images of `per_image` codes each, drawn per context from a geometric-like
// distribution whose skew differs by context (as the remote channels' do), and their counts.
struct Codes {
  std::vector<std::vector<uint8_t>> images;
  std::vector<double> counts;
};
Codes draw(int64_t contexts, int64_t symbols, size_t per_image, size_t images, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::discrete_distribution<int>> dist;
  for (int64_t c = 0; c < contexts; ++c) {
    std::vector<double> w;
    for (int64_t s = 0; s < symbols; ++s) w.push_back(std::pow(0.15 + 0.1 * static_cast<double>(c), static_cast<double>(s)));
    dist.emplace_back(w.begin(), w.end());
  }
  Codes out{{}, std::vector<double>(static_cast<size_t>(contexts * symbols), 0.0)};
  for (size_t i = 0; i < images; ++i) {
    std::vector<uint8_t> codes(per_image);
    for (size_t k = 0; k < per_image; ++k) {
      const size_t c = k % static_cast<size_t>(contexts);
      codes[k] = static_cast<uint8_t>(dist[c](rng));
      out.counts[c * static_cast<size_t>(symbols) + codes[k]] += 1;
    }
    out.images.push_back(std::move(codes));
  }
  return out;
}

TEST(Codec, FittedTablesAreValidAndKeepUnseenCodesCodable) {
  std::vector<double> counts = {1000, 10, 0, 0, 5, 5, 5, 5};  // context 0 never saw codes 2 and 3
  const CodecModel m = CodecModel::fit(counts, 2, 4);
  for (int64_t c = 0; c < 2; ++c) {
    uint32_t sum = 0;
    for (int64_t s = 0; s < 4; ++s) {
      EXPECT_GE(m.freq[static_cast<size_t>(c * 4 + s)], 1);
      EXPECT_EQ(m.cum[static_cast<size_t>(c * 4 + s)], sum);
      sum += m.freq[static_cast<size_t>(c * 4 + s)];
    }
    EXPECT_EQ(sum, 1u << AGILENN_CODEC_PROB_BITS);
  }
  EXPECT_EQ(m.freq[4], 1024);  // equal counts, equal shares
  const std::vector<uint8_t> unseen = {3, 0, 2, 1, 0, 3};
  EXPECT_EQ(decode(m, encode(m, unseen).data(), encode(m, unseen).size(), unseen.size()), unseen);
  EXPECT_EQ(CodecModel::from_json(m.to_json()).cum, m.cum);
}

TEST(Codec, RoundTripsAndCostsTheModelsCrossEntropy) {
  // 8 centroids, 19 remote channels, 32×32 positions: the paper's CIFAR features.
  const int64_t contexts = 19, symbols = 8;
  const size_t per_image = 19 * 32 * 32;
  const Codes train = draw(contexts, symbols, per_image, 8, 1), test = draw(contexts, symbols, per_image, 8, 2);
  const CodecModel m = CodecModel::fit(train.counts, contexts, symbols);
  const CodeCost cost = code_cost(test.counts, contexts, symbols, m);
  double bytes = 0;
  for (const std::vector<uint8_t>& codes : test.images) {
    const std::vector<uint8_t> stream = encode(m, codes);
    ASSERT_EQ(decode(m, stream.data(), stream.size(), codes.size()), codes);
    bytes += static_cast<double>(stream.size());
  }
  // rANS with 32-bit state and 12-bit probabilities loses ~1e-4 bits a code to its integer
  // arithmetic, plus up to 4 bytes of state and one of rounding per image.
  const double images = static_cast<double>(test.images.size());
  EXPECT_LE(bytes * 8, cost.model * 1.001 + images * 5 * 8);
  EXPECT_GE(bytes * 8, cost.context_entropy * 0.99);
  // The skewed channels make per-context tables pay: below the pooled entropy and below
  // one Huffman code per context (at least a bit per code), far below 3 raw bits.
  EXPECT_LT(cost.model, cost.huffman);
  EXPECT_LT(cost.context_entropy, cost.entropy);
  EXPECT_LT(cost.huffman, cost.raw);
  EXPECT_DOUBLE_EQ(cost.raw, 3.0 * per_image * images);
  std::cout << "bits per image: raw " << cost.raw / images << ", entropy " << cost.entropy / images
            << ", per-channel entropy " << cost.context_entropy / images << ", Huffman " << cost.huffman / images
            << ", rANS " << bytes * 8 / images << std::endl;
}

TEST(Codec, EmptyAndExtremeInputs) {
  const CodecModel m = CodecModel::fit({1, 1, 1, 1}, 1, 4);
  EXPECT_EQ(encode(m, {}).size(), 4u);
  EXPECT_TRUE(decode(m, encode(m, {}).data(), 4, 0).empty());
  // The least likely code everywhere: at most PROB_BITS bits each, within the bound.
  const CodecModel skewed = CodecModel::fit({1e9, 0, 0, 0}, 1, 4);
  const std::vector<uint8_t> worst(4000, 3);
  const std::vector<uint8_t> stream = encode(skewed, worst);
  EXPECT_LE(stream.size(), agilenn_codec_bound(worst.size()));
  EXPECT_EQ(decode(skewed, stream.data(), stream.size(), worst.size()), worst);
  // Too small a buffer, or a code past the table: the encoder returns 0, writing nothing past `capacity`.
  const agilenn_codec_model view = skewed.view();
  std::vector<uint8_t> small(16, 0xab);
  EXPECT_EQ(agilenn_codec_encode(&view, worst.data(), worst.size(), small.data(), 8), 0u);
  EXPECT_EQ(small[8], 0xab);
  const uint8_t bad = 4;
  EXPECT_EQ(agilenn_codec_encode(&view, &bad, 1, small.data(), small.size()), 0u);
  EXPECT_THAT(error_of([&] { encode(m, {4}); }), HasSubstr("not below 4"));
}

TEST(Codec, DamagedStreamsAndTablesAreRefused) {
  const Codes c = draw(3, 8, 3000, 1, 3);
  const CodecModel m = CodecModel::fit(c.counts, 3, 8);
  std::vector<uint8_t> stream = encode(m, c.images[0]);
  EXPECT_THAT(error_of([&] { decode(m, stream.data(), stream.size() - 1, 3000); }), HasSubstr("ends before code"));
  EXPECT_THAT(error_of([&] { decode(m, stream.data(), stream.size(), 2999); }), HasSubstr("corrupt"));
  EXPECT_THAT(error_of([&] { decode(m, stream.data(), 3, 0); }), HasSubstr("too short"));
  stream[0] ^= 0x40;  // the state
  EXPECT_THAT(error_of([&] { decode(m, stream.data(), stream.size(), 3000); }), HasSubstr("codec stream"));

  nlohmann::json j = m.to_json();
  j["freq"][0] = 0;
  EXPECT_THAT(error_of([&] { CodecModel::from_json(j); }), HasSubstr("frequency 0"));
  j = m.to_json();
  j["freq"][1] = j["freq"][1].get<int>() + 1;
  EXPECT_THAT(error_of([&] { CodecModel::from_json(j); }), HasSubstr("sums to 4097"));
  j = m.to_json();
  j.erase("symbols");
  EXPECT_THAT(error_of([&] { CodecModel::from_json(j); }), HasSubstr("malformed"));
}

}  // namespace
}  // namespace agilenn::exporting
