#include "agilenn_int8.h"

/* a · b / 2^31 rounded half up, saturating the one overflow (both INT32_MIN). */
static int32_t rounding_doubling_high_mul(int32_t a, int32_t b) {
  const int64_t ab = (int64_t)a * (int64_t)b;
  const int64_t nudge = ab >= 0 ? (int64_t)1 << 30 : 1 - ((int64_t)1 << 30);
  if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
  return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

/* x / 2^exponent rounded half away from zero. */
static int32_t rounding_divide_by_pot(int32_t x, int32_t exponent) {
  const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* The shifts of negative values below are arithmetic shifts on the compilers this targets, as
 * TFLite assumes. */
int32_t agilenn_requantize_double_rounding(int32_t x, int32_t multiplier, int32_t shift) {
  const int32_t left = shift > 0 ? shift : 0, right = shift > 0 ? 0 : -shift;
  return rounding_divide_by_pot(rounding_doubling_high_mul(x * (1 << left), multiplier), right);
}

int32_t agilenn_requantize_single_rounding(int32_t x, int32_t multiplier, int32_t shift) {
  const int32_t total_shift = 31 - shift;
  const int64_t rounding = (int64_t)1 << (total_shift - 1);
  return (int32_t)(((int64_t)x * (int64_t)multiplier + rounding) >> total_shift);
}

static int8_t clamp_to(int32_t v, int32_t lo, int32_t hi) { return (int8_t)(v < lo ? lo : v > hi ? hi : v); }

/* The taps [begin, end) of a window starting at `origin` that fall inside [0, size). */
static void window(int32_t origin, int32_t kernel, int32_t size, int32_t* begin, int32_t* end) {
  *begin = origin < 0 ? -origin : 0;
  *end = size - origin < kernel ? size - origin : kernel;
}

static int8_t requantize_output(const agilenn_conv_params* p, int32_t acc, int32_t oc) {
  acc = agilenn_requantize_double_rounding(acc + p->bias[oc], p->multiplier[oc], p->shift[oc]) + p->out_zero_point;
  return clamp_to(acc, p->act_min, p->act_max);
}

/* Taps outside the input are skipped: they hold the zero point, a real 0. */
void agilenn_conv(const agilenn_conv_params* p, const int8_t* in, int8_t* out) {
  const size_t in_c = (size_t)p->in_c, out_c = (size_t)p->out_c;
  int32_t oy, ox, oc, ky, kx, ic, ky_begin, ky_end, kx_begin, kx_end;
  for (oy = 0; oy < p->out_h; ++oy) {
    const int32_t y0 = oy * p->stride - p->pad_top;
    window(y0, p->kernel_h, p->in_h, &ky_begin, &ky_end);
    for (ox = 0; ox < p->out_w; ++ox) {
      const int32_t x0 = ox * p->stride - p->pad_left;
      int8_t* o = out + ((size_t)oy * (size_t)p->out_w + (size_t)ox) * out_c;
      window(x0, p->kernel_w, p->in_w, &kx_begin, &kx_end);
      for (oc = 0; oc < p->out_c; ++oc) {
        int32_t acc = 0;
        for (ky = ky_begin; ky < ky_end; ++ky)
          for (kx = kx_begin; kx < kx_end; ++kx) {
            const int8_t* pixel = in + ((size_t)(y0 + ky) * (size_t)p->in_w + (size_t)(x0 + kx)) * in_c;
            if (p->depthwise) {
              acc += (int32_t)p->filter[((size_t)ky * (size_t)p->kernel_w + (size_t)kx) * out_c + (size_t)oc] *
                     ((int32_t)pixel[oc] - p->in_zero_point);
            } else {
              const int8_t* w =
                  p->filter + (((size_t)oc * (size_t)p->kernel_h + (size_t)ky) * (size_t)p->kernel_w + (size_t)kx) * in_c;
              for (ic = 0; ic < p->in_c; ++ic) acc += (int32_t)w[ic] * ((int32_t)pixel[ic] - p->in_zero_point);
            }
          }
        o[oc] = requantize_output(p, acc, oc);
      }
    }
  }
}

void agilenn_average_pool(int32_t h, int32_t w, int32_t c, int32_t act_min, int32_t act_max, const int8_t* in,
                          int8_t* out) {
  const int32_t count = h * w;
  int32_t ch, i;
  for (ch = 0; ch < c; ++ch) {
    int32_t acc = 0, average;
    for (i = 0; i < count; ++i) acc += in[(size_t)i * (size_t)c + (size_t)ch];
    average = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
    out[ch] = clamp_to(average, act_min, act_max);
  }
}

void agilenn_fully_connected(const agilenn_fully_connected_params* p, const int8_t* in, int8_t* out) {
  int32_t o, i;
  for (o = 0; o < p->out_n; ++o) {
    int32_t acc = 0;
    for (i = 0; i < p->in_n; ++i)
      acc += (int32_t)p->weights[(size_t)o * (size_t)p->in_n + (size_t)i] * ((int32_t)in[i] - p->in_zero_point);
    acc = agilenn_requantize_single_rounding(acc + p->bias[o], p->multiplier, p->shift) + p->out_zero_point;
    out[o] = clamp_to(acc, p->act_min, p->act_max);
  }
}

void agilenn_codes(const int8_t* in, size_t n, const uint8_t* table, uint8_t* codes) {
  size_t i;
  for (i = 0; i < n; ++i) codes[i] = table[(uint8_t)in[i]];
}
