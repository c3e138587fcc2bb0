// The host side of the remote codes' entropy coder (engine/export/agilenn_codec.h): fitting
// its static model on training-set codes, decoding on the server, and what the codes cost
// under each way of sending them.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <cstdint>
#include <vector>

#include "engine/export/agilenn_codec.h"

namespace agilenn::exporting {

struct CodecModel {
  int64_t contexts = 0, symbols = 0;
  std::vector<uint16_t> freq, cum;  // [contexts][symbols]

  // Frequencies from code counts [contexts][symbols]: proportional to the counts, at least 1
  // each (a code unseen in training stays codable), 2^PROB_BITS per context.
  static CodecModel fit(const std::vector<double>& counts, int64_t contexts, int64_t symbols);
  agilenn_codec_model view() const;
  nlohmann::json to_json() const;
  static CodecModel from_json(const nlohmann::json& j);  // throws naming what is wrong
};

// One image's codes through the C99 encoder.
std::vector<uint8_t> encode(const CodecModel& model, const std::vector<uint8_t>& codes);
// The inverse; throws when the stream is corrupt or does not hold exactly `n` codes.
std::vector<uint8_t> decode(const CodecModel& model, const uint8_t* stream, size_t bytes, size_t n);

// Bits the codes of `counts` [contexts][symbols] take: sent raw (log2 symbols each), at their
// order-0 entropy, at their per-context entropy, with one Huffman code per context, and at
// the cross-entropy under `model` (what rANS approaches).
struct CodeCost {
  double raw = 0, entropy = 0, context_entropy = 0, huffman = 0, model = 0;
};
CodeCost code_cost(const std::vector<double>& counts, int64_t contexts, int64_t symbols, const CodecModel& model);

}  // namespace agilenn::exporting
