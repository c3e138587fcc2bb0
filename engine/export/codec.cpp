#include "engine/export/codec.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <nlohmann/json.hpp>
#include <numeric>
#include <queue>

#include "engine/core/error.h"

namespace agilenn::exporting {
namespace {

constexpr uint32_t kTotal = 1u << AGILENN_CODEC_PROB_BITS;

// Code lengths of a Huffman code for `weights` (0 for a symbol that never occurs; one
// symbol alone gets 1 bit).
std::vector<int> huffman_lengths(const std::vector<double>& weights) {
  using Item = std::pair<double, int>;  // weight, node
  std::priority_queue<Item, std::vector<Item>, std::greater<>> queue;
  std::vector<int> parent;
  for (size_t s = 0; s < weights.size(); ++s) {
    parent.push_back(-1);
    if (weights[s] > 0) queue.emplace(weights[s], static_cast<int>(s));
  }
  std::vector<int> lengths(weights.size(), 0);
  if (queue.size() == 1) lengths[static_cast<size_t>(queue.top().second)] = 1;
  while (queue.size() > 1) {
    const Item a = queue.top();
    queue.pop();
    const Item b = queue.top();
    queue.pop();
    const int node = static_cast<int>(parent.size());
    parent.push_back(-1);
    parent[static_cast<size_t>(a.second)] = parent[static_cast<size_t>(b.second)] = node;
    queue.emplace(a.first + b.first, node);
  }
  for (size_t s = 0; s < weights.size(); ++s)
    if (weights[s] > 0 && parent[s] >= 0)
      for (int n = static_cast<int>(s); parent[static_cast<size_t>(n)] >= 0; n = parent[static_cast<size_t>(n)])
        ++lengths[s];
  return lengths;
}

double entropy_bits(const double* counts, int64_t n) {
  const double total = std::accumulate(counts, counts + n, 0.0);
  double bits = 0;
  for (int64_t s = 0; s < n; ++s)
    if (counts[s] > 0) bits -= counts[s] * std::log2(counts[s] / total);
  return bits;
}

}  // namespace

CodecModel CodecModel::fit(const std::vector<double>& counts, int64_t contexts, int64_t symbols) {
  AGILENN_CHECK(contexts > 0 && symbols >= 2 && symbols <= 256 && static_cast<uint32_t>(symbols) <= kTotal &&
                    counts.size() == static_cast<size_t>(contexts * symbols),
                "codec model: " << contexts << " contexts × " << symbols << " symbols (2 to 256) from "
                                << counts.size() << " counts");
  CodecModel m{contexts, symbols, {}, {}};
  for (int64_t c = 0; c < contexts; ++c) {
    const double* row = counts.data() + c * symbols;
    const double total = std::accumulate(row, row + symbols, 0.0);
    // Each symbol gets its share of what remains after the floor of 1 each, rounded down;
    // the rest goes to the symbols that lost the most to the rounding.
    const double spare = kTotal - static_cast<double>(symbols);
    std::vector<uint32_t> f(static_cast<size_t>(symbols), 1);
    std::vector<std::pair<double, int64_t>> remainder;
    uint32_t used = static_cast<uint32_t>(symbols);
    for (int64_t s = 0; s < symbols; ++s) {
      const double share = total > 0 ? row[s] / total * spare : spare / static_cast<double>(symbols);
      const auto whole = static_cast<uint32_t>(std::floor(share));
      f[static_cast<size_t>(s)] += whole;
      used += whole;
      remainder.emplace_back(share - whole, s);
    }
    std::sort(remainder.begin(), remainder.end(), [](const auto& a, const auto& b) {
      return a.first != b.first ? a.first > b.first : a.second < b.second;
    });
    for (size_t k = 0; used < kTotal; ++k, ++used) ++f[static_cast<size_t>(remainder[k % remainder.size()].second)];
    uint32_t cum = 0;
    for (int64_t s = 0; s < symbols; ++s) {
      m.freq.push_back(static_cast<uint16_t>(f[static_cast<size_t>(s)]));
      m.cum.push_back(static_cast<uint16_t>(cum));
      cum += f[static_cast<size_t>(s)];
    }
  }
  return m;
}

agilenn_codec_model CodecModel::view() const {
  return {static_cast<uint32_t>(contexts), static_cast<uint32_t>(symbols), freq.data(), cum.data()};
}

nlohmann::json CodecModel::to_json() const {
  return {{"coder", "rans32"},
          {"prob_bits", AGILENN_CODEC_PROB_BITS},
          {"contexts", contexts},
          {"symbols", symbols},
          {"freq", freq}};
}

CodecModel CodecModel::from_json(const nlohmann::json& j) {
  try {
    AGILENN_CHECK(j.at("coder") == "rans32" && j.at("prob_bits") == AGILENN_CODEC_PROB_BITS,
                  "codec tables: coder " << j.at("coder") << " with " << j.at("prob_bits")
                                         << " probability bits; this engine decodes rans32 with "
                                         << AGILENN_CODEC_PROB_BITS);
    CodecModel m;
    m.contexts = j.at("contexts").get<int64_t>();
    m.symbols = j.at("symbols").get<int64_t>();
    const std::vector<int64_t> freq = j.at("freq").get<std::vector<int64_t>>();
    AGILENN_CHECK(m.contexts > 0 && m.contexts <= (int64_t{1} << 24) && m.symbols >= 2 && m.symbols <= 256 &&
                      freq.size() == static_cast<size_t>(m.contexts * m.symbols),
                  "codec tables: " << freq.size() << " frequencies for " << m.contexts << " contexts × " << m.symbols
                                   << " symbols");
    for (int64_t f : freq) {
      AGILENN_CHECK(f >= 0 && f <= kTotal, "codec tables: frequency " << f << " outside 0.." << kTotal);
      m.freq.push_back(static_cast<uint16_t>(f));
    }
    for (int64_t c = 0; c < m.contexts; ++c) {
      uint32_t cum = 0;
      for (int64_t s = 0; s < m.symbols; ++s) {
        const uint16_t f = m.freq[static_cast<size_t>(c * m.symbols + s)];
        AGILENN_CHECK(f > 0, "codec tables: context " << c << " gives symbol " << s << " frequency 0");
        m.cum.push_back(static_cast<uint16_t>(cum));
        cum += f;
      }
      AGILENN_CHECK(cum == kTotal, "codec tables: context " << c << " sums to " << cum << ", not " << kTotal);
    }
    return m;
  } catch (const nlohmann::json::exception& e) {
    AGILENN_THROW("codec tables are malformed: " << e.what());
  }
}

std::vector<uint8_t> encode(const CodecModel& model, const std::vector<uint8_t>& codes) {
  std::vector<uint8_t> out(agilenn_codec_bound(codes.size()));
  const agilenn_codec_model m = model.view();
  const size_t n = agilenn_codec_encode(&m, codes.data(), codes.size(), out.data(), out.size());
  AGILENN_CHECK(n > 0, "codec: a code is not below " << model.symbols);
  out.resize(n);
  return out;
}

std::vector<uint8_t> decode(const CodecModel& model, const uint8_t* stream, size_t bytes, size_t n) {
  AGILENN_CHECK(bytes >= 4, "codec stream of " << bytes << " bytes: too short for its state");
  const auto symbols = static_cast<size_t>(model.symbols), contexts = static_cast<size_t>(model.contexts);
  // Per context, the symbol of each of the 2^PROB_BITS slots.
  std::vector<uint8_t> slot_symbol(contexts * kTotal);
  for (size_t c = 0; c < contexts; ++c)
    for (size_t s = 0; s < symbols; ++s)
      std::fill_n(slot_symbol.begin() + static_cast<std::ptrdiff_t>(c * kTotal + model.cum[c * symbols + s]),
                  model.freq[c * symbols + s], static_cast<uint8_t>(s));
  uint32_t x = static_cast<uint32_t>(stream[0]) | static_cast<uint32_t>(stream[1]) << 8 |
               static_cast<uint32_t>(stream[2]) << 16 | static_cast<uint32_t>(stream[3]) << 24;
  size_t at = 4;
  std::vector<uint8_t> codes(n);
  for (size_t i = 0; i < n; ++i) {
    const size_t c = i % contexts;
    const uint32_t slot = x & (kTotal - 1);
    const uint8_t s = slot_symbol[c * kTotal + slot];
    codes[i] = s;
    x = model.freq[c * symbols + s] * (x >> AGILENN_CODEC_PROB_BITS) + slot - model.cum[c * symbols + s];
    while (x < AGILENN_CODEC_STATE_LOW) {
      AGILENN_CHECK(at < bytes, "codec stream of " << bytes << " bytes ends before code " << i << " of " << n);
      x = x << 8 | stream[at++];
    }
  }
  // The decoder ends where the encoder began, having read every byte.
  AGILENN_CHECK(x == AGILENN_CODEC_STATE_LOW && at == bytes,
                "codec stream is corrupt: it does not end in the encoder's initial state after " << n << " codes");
  return codes;
}

CodeCost code_cost(const std::vector<double>& counts, int64_t contexts, int64_t symbols, const CodecModel& model) {
  AGILENN_CHECK(counts.size() == static_cast<size_t>(contexts * symbols) && model.contexts == contexts &&
                    model.symbols == symbols,
                "code_cost: counts and model disagree on contexts × symbols");
  CodeCost cost;
  std::vector<double> pooled(static_cast<size_t>(symbols), 0.0);
  for (int64_t c = 0; c < contexts; ++c) {
    const double* row = counts.data() + c * symbols;
    const std::vector<double> weights(row, row + symbols);
    const std::vector<int> lengths = huffman_lengths(weights);
    for (int64_t s = 0; s < symbols; ++s) {
      const double k = row[s];
      pooled[static_cast<size_t>(s)] += k;
      cost.raw += k * std::log2(static_cast<double>(symbols));
      cost.huffman += k * lengths[static_cast<size_t>(s)];
      cost.model += k * (AGILENN_CODEC_PROB_BITS - std::log2(static_cast<double>(model.freq[static_cast<size_t>(c * symbols + s)])));
    }
    cost.context_entropy += entropy_bits(row, symbols);
  }
  cost.entropy = entropy_bits(pooled.data(), symbols);
  return cost;
}

}  // namespace agilenn::exporting
