// The C99 device half's int8 kernels (engine/export/agilenn_int8.c) against their arithmetic
// written out exactly. Requantization, x · m · 2^shift / 2^31, comes in LiteRT's two forms:
// rounded once, half up (its reference fully connected layer), or rounded twice, first to
// x · m / 2^31 half up and then by 2^-shift half away from zero (its reference convolutions);
// tools/verify-export.py checks whole models bit for bit against LiteRT's reference
// interpreter. The average pool rounds half away from zero; the convolutions and the dense
// layer sum (q − zero point) · w, add the bias, requantize and clamp.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <vector>

#include "engine/export/agilenn_int8.h"

namespace agilenn::exporting {
namespace {

// num / den rounded half up, or half away from zero, exactly (den > 0).
int64_t div_half_up(int64_t num, int64_t den) {
  int64_t q = num / den, r = num % den;
  if (r < 0) r += den, q -= 1;  // floor
  return 2 * r >= den ? q + 1 : q;
}
int64_t div_half_away(int64_t num, int64_t den) { return num >= 0 ? div_half_up(num, den) : -div_half_up(-num, den); }

// |x| < 2^25, m < 2^31 and -20 <= shift <= 4 keep every term under 2^63.
int64_t single_rounding(int64_t x, int64_t m, int shift) { return div_half_up(x * m, int64_t{1} << (31 - shift)); }
int64_t double_rounding(int64_t x, int64_t m, int shift) {
  return div_half_away(div_half_up(x * m, int64_t{1} << 31), int64_t{1} << -shift);
}

TEST(Int8Kernels, RequantizeRoundsAsLiteRTsTwoForms) {
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<int32_t> acc(-(1 << 24), 1 << 24);
  std::uniform_int_distribution<int32_t> mult(1 << 30, 2147483647), shifts(-20, 0);
  for (int i = 0; i < 100000; ++i) {
    const int32_t x = acc(rng), m = mult(rng), s = shifts(rng);
    ASSERT_EQ(agilenn_requantize_single_rounding(x, m, s), single_rounding(x, m, s)) << x << " " << m << " " << s;
    ASSERT_EQ(agilenn_requantize_double_rounding(x, m, s), double_rounding(x, m, s)) << x << " " << m << " " << s;
  }
  // Left shifts (multipliers of 1 and more), small accumulators.
  std::uniform_int_distribution<int32_t> small(-(1 << 20), 1 << 20), left(1, 4);
  for (int i = 0; i < 10000; ++i) {
    const int32_t x = small(rng), m = mult(rng), s = left(rng);
    ASSERT_EQ(agilenn_requantize_single_rounding(x, m, s), div_half_up(x * int64_t{m}, int64_t{1} << (31 - s)));
    ASSERT_EQ(agilenn_requantize_double_rounding(x, m, s), div_half_up((int64_t{x} << s) * m, int64_t{1} << 31));
  }
  // Exact halves, ±3 · 2^30 / 2^31 = ±1.5, round up in both forms: 2 and -1.
  for (auto* requantize : {agilenn_requantize_single_rounding, agilenn_requantize_double_rounding}) {
    EXPECT_EQ(requantize(3, 1 << 30, 0), 2);
    EXPECT_EQ(requantize(-3, 1 << 30, 0), -1);
  }
  // Rounded twice: 5 · 2^30 / 2^31 = 2.5 → 3, then 3 / 2 = 1.5 → 2 (once: 1.25 → 1); the
  // shift rounds a negative half away from zero: -2 · 2^30 / 2^31 = -1, then -1 / 2 → -1.
  EXPECT_EQ(agilenn_requantize_double_rounding(5, 1 << 30, -1), 2);
  EXPECT_EQ(agilenn_requantize_single_rounding(5, 1 << 30, -1), 1);
  EXPECT_EQ(agilenn_requantize_double_rounding(-2, 1 << 30, -1), -1);
  EXPECT_EQ(agilenn_requantize_single_rounding(-2, 1 << 30, -1), 0);
}

TEST(Int8Kernels, AveragePoolRoundsHalfAwayFromZeroAndClamps) {
  // Channel 0: sum 2 over 4 → 0.5 → 1; channel 1: sum -2 → -0.5 → -1; channel 2: 7/4 → 2;
  // channel 3: 127 everywhere, clamped to 100.
  const std::vector<int8_t> in{1, -1, 2, 127, 1, -1, 2, 127, 0, 0, 2, 127, 0, 0, 1, 127};
  std::vector<int8_t> out(4);
  agilenn_average_pool(2, 2, 4, -128, 100, in.data(), out.data());
  EXPECT_EQ(out, (std::vector<int8_t>{1, -1, 2, 100}));
}

TEST(Int8Kernels, ConvolutionsAndDenseFollowTheirFormula) {
  // A 3×3 depthwise convolution (stride 2, SAME: no padding before, one after) of a 4×4×2
  // input, a pointwise one and a dense layer, against sums written out; multipliers of
  // exactly 1/2 (2^30 · 2^0 / 2^31), so odd sums land on halves and the rounding shows.
  std::mt19937 rng(3);
  std::uniform_int_distribution<int> v(-128, 127), w(-127, 127);
  std::vector<int8_t> in(4 * 4 * 2), dw(3 * 3 * 2), pw(3 * 2);
  for (auto* t : {&in, &dw, &pw})
    for (int8_t& x : *t) x = static_cast<int8_t>(t == &in ? v(rng) : w(rng));
  const std::vector<int32_t> bias{5, -7, 11}, half(3, 1 << 30), zero(3, 0);
  const int32_t in_zero = -3, out_zero = 4;
  auto expect = [&](int64_t acc, bool convolution) {
    const int64_t r = convolution ? double_rounding(acc, 1 << 30, 0) : single_rounding(acc, 1 << 30, 0);
    return static_cast<int8_t>(std::clamp<int64_t>(r + out_zero, -128, 127));
  };

  agilenn_conv_params d{4, 4, 2, 2, 2, 2, 3, 3, 2, 0, 0, 1, in_zero, out_zero, -128, 127,
                        dw.data(), bias.data(), half.data(), zero.data()};
  std::vector<int8_t> dout(2 * 2 * 2);
  agilenn_conv(&d, in.data(), dout.data());
  for (int oy = 0; oy < 2; ++oy)
    for (int ox = 0; ox < 2; ++ox)
      for (int c = 0; c < 2; ++c) {
        int64_t acc = bias[static_cast<size_t>(c)];
        for (int ky = 0; ky < 3; ++ky)
          for (int kx = 0; kx < 3; ++kx) {
            const int y = oy * 2 + ky, x = ox * 2 + kx;
            if (y < 4 && x < 4)
              acc += dw[static_cast<size_t>((ky * 3 + kx) * 2 + c)] * (in[static_cast<size_t>((y * 4 + x) * 2 + c)] - in_zero);
          }
        EXPECT_EQ(dout[static_cast<size_t>((oy * 2 + ox) * 2 + c)], expect(acc, true)) << oy << ox << c;
      }

  agilenn_conv_params p{4, 4, 2, 4, 4, 3, 1, 1, 1, 0, 0, 0, in_zero, out_zero, -128, 127,
                        pw.data(), bias.data(), half.data(), zero.data()};
  std::vector<int8_t> pout(4 * 4 * 3);
  agilenn_conv(&p, in.data(), pout.data());
  for (int i = 0; i < 16; ++i)
    for (int o = 0; o < 3; ++o) {
      int64_t acc = bias[static_cast<size_t>(o)];
      for (int c = 0; c < 2; ++c) acc += pw[static_cast<size_t>(o * 2 + c)] * (in[static_cast<size_t>(i * 2 + c)] - in_zero);
      EXPECT_EQ(pout[static_cast<size_t>(i * 3 + o)], expect(acc, true)) << i << " " << o;
    }

  agilenn_fully_connected_params f{2, 3, in_zero, out_zero, -128, 127, pw.data(), bias.data(), 1 << 30, 0};
  std::vector<int8_t> fout(3);
  agilenn_fully_connected(&f, in.data(), fout.data());
  for (int o = 0; o < 3; ++o) {
    int64_t acc = bias[static_cast<size_t>(o)];
    for (int c = 0; c < 2; ++c) acc += pw[static_cast<size_t>(o * 2 + c)] * (in[static_cast<size_t>(c)] - in_zero);
    EXPECT_EQ(fout[static_cast<size_t>(o)], expect(acc, false)) << o;
  }
}

TEST(Int8Kernels, CodesLookUpEachValueAsUint8) {
  std::vector<uint8_t> table(256);
  for (int i = 0; i < 256; ++i) table[static_cast<size_t>(i)] = static_cast<uint8_t>(i / 32);
  const std::vector<int8_t> in{-128, -1, 0, 127};
  std::vector<uint8_t> codes(4);
  agilenn_codes(in.data(), in.size(), table.data(), codes.data());
  EXPECT_EQ(codes, (std::vector<uint8_t>{4, 7, 0, 3}));  // 128/32, 255/32, 0, 127/32
}

}  // namespace
}  // namespace agilenn::exporting
