/* Lossless coding of the quantizer's codes (centroid indices) of one image, for the
 * device: a static rANS coder whose model has one frequency table per remote channel
 * (the codes of a channel share a distribution; channels differ). Portable C99, no
 * allocation, no floating point: it is compiled into the device half as it is.
 *
 * Model: `contexts` tables of `symbols` frequencies, each at least 1, each table summing to
 * 2^AGILENN_CODEC_PROB_BITS; cum holds each table's exclusive prefix sums. Code i of an
 * image uses table i % contexts (the codes are NHWC, channels fastest).
 *
 * Stream: the encoder's final 32-bit state (little-endian), then the renormalisation
 * bytes in the order the decoder reads them (engine/export/codec.h decodes). */
#ifndef AGILENN_CODEC_H
#define AGILENN_CODEC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define AGILENN_CODEC_PROB_BITS 12u
#define AGILENN_CODEC_STATE_LOW (1u << 23) /* the state lives in [2^23, 2^31) between symbols */

typedef struct {
  uint32_t contexts;
  uint32_t symbols;
  const uint16_t* freq; /* [contexts][symbols] */
  const uint16_t* cum;  /* [contexts][symbols] */
} agilenn_codec_model;

/* Bytes that always suffice for n codes: a code costs at most PROB_BITS bits. */
size_t agilenn_codec_bound(size_t n);

/* Encodes codes[0..n) (each < symbols) into out[0..capacity). Returns the stream's length,
 * or 0 if capacity is too small or a code is out of range. The stream is built from the end
 * of `out` backwards, then moved to its start. */
size_t agilenn_codec_encode(const agilenn_codec_model* model, const uint8_t* codes, size_t n, uint8_t* out,
                            size_t capacity);

#ifdef __cplusplus
}
#endif

#endif
