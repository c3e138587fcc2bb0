/* The int8 kernels of the device half's C runtime (agilenn-export --target c99): portable
 * C99, no allocation, no floating point, compiled into the device half as they are. Their
 * integer arithmetic is that of LiteRT's int8 reference kernels (per-channel fixed-point
 * multipliers with their rounding, zero points, clamping), so a generated model computes
 * bit for bit what LiteRT's reference interpreter (OpResolverType.BUILTIN_REF) computes on
 * the same .tflite model (tools/verify-export.py checks it).
 *
 * Tensors are NHWC with batch 1; a value q of a tensor stands for scale · (q − zero_point). */
#ifndef AGILENN_INT8_H
#define AGILENN_INT8_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* x · multiplier · 2^shift / 2^31 (multiplier in [2^30, 2^31), shift in [-31, 30]) in TFLite's
 * two fixed-point forms: x · multiplier / 2^31 rounded half up, then divided by 2^-shift
 * rounded half away from zero, which LiteRT's reference convolutions use; and one rounding,
 * half up, which its reference fully connected layer uses. */
int32_t agilenn_requantize_double_rounding(int32_t x, int32_t multiplier, int32_t shift);
int32_t agilenn_requantize_single_rounding(int32_t x, int32_t multiplier, int32_t shift);

typedef struct {
  int32_t in_h, in_w, in_c, out_h, out_w, out_c;
  int32_t kernel_h, kernel_w, stride, pad_top, pad_left;
  int32_t depthwise; /* filter [1][KH][KW][C] (depth multiplier 1); else [O][KH][KW][I] */
  int32_t in_zero_point, out_zero_point, act_min, act_max;
  const int8_t* filter;
  const int32_t* bias;       /* [out_c], at scale in_scale · filter_scale[c] */
  const int32_t* multiplier; /* [out_c]: in_scale · filter_scale[c] / out_scale */
  const int32_t* shift;      /* [out_c] */
} agilenn_conv_params;

void agilenn_conv(const agilenn_conv_params* p, const int8_t* in, int8_t* out);

/* One window over all of [h][w][c]: [c] (input and output share their quantization). */
void agilenn_average_pool(int32_t h, int32_t w, int32_t c, int32_t act_min, int32_t act_max, const int8_t* in,
                          int8_t* out);

typedef struct {
  int32_t in_n, out_n;
  int32_t in_zero_point, out_zero_point, act_min, act_max;
  const int8_t* weights; /* [out_n][in_n], per-tensor scale */
  const int32_t* bias;   /* [out_n] */
  int32_t multiplier, shift;
} agilenn_fully_connected_params;

void agilenn_fully_connected(const agilenn_fully_connected_params* p, const int8_t* in, int8_t* out);

/* codes[i] = table[in[i] as uint8 (q mod 256)]: the quantizer's centroid index of each value. */
void agilenn_codes(const int8_t* in, size_t n, const uint8_t* table, uint8_t* codes);

#ifdef __cplusplus
}
#endif

#endif
