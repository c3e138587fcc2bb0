#include "agilenn_codec.h" /* beside it, here and in every export */

#include <string.h>

size_t agilenn_codec_bound(size_t n) { return n + n / 2 + 8; }

size_t agilenn_codec_encode(const agilenn_codec_model* model, const uint8_t* codes, size_t n, uint8_t* out,
                            size_t capacity) {
  uint32_t x = AGILENN_CODEC_STATE_LOW;
  uint8_t* p = out + capacity;
  size_t i, length;
  /* rANS is last in, first out: encode backwards so that the decoder reads forwards. */
  for (i = n; i-- > 0;) {
    const uint32_t context = (uint32_t)(i % model->contexts);
    const uint32_t s = codes[i];
    uint32_t f, limit;
    if (s >= model->symbols) return 0;
    f = model->freq[context * model->symbols + s];
    /* Shift bytes out until encoding s keeps the state below 2^31. */
    limit = ((AGILENN_CODEC_STATE_LOW >> AGILENN_CODEC_PROB_BITS) << 8) * f;
    while (x >= limit) {
      if (p == out) return 0;
      *--p = (uint8_t)(x & 0xffu);
      x >>= 8;
    }
    x = ((x / f) << AGILENN_CODEC_PROB_BITS) + (x % f) + model->cum[context * model->symbols + s];
  }
  if ((size_t)(p - out) < 4) return 0;
  p -= 4;
  p[0] = (uint8_t)(x & 0xffu);
  p[1] = (uint8_t)((x >> 8) & 0xffu);
  p[2] = (uint8_t)((x >> 16) & 0xffu);
  p[3] = (uint8_t)(x >> 24);
  length = (size_t)(out + capacity - p);
  memmove(out, p, length);
  return length;
}
