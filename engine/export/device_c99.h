// The int8 device half as self-contained C99 (agilenn-export --target c99), generated from
// the very graph written as device_int8.tflite: weights, biases, fixed-point multipliers and
// the code table as const arrays (flash), the activations in one static arena laid out by a
// liveness plan (no malloc), calls into the int8 kernels (agilenn_int8.{h,c}) and the codec's
// encoder (agilenn_codec.{h,c}). One entry point: an int8 image in, the local logits (int8),
// the codes and their encoded stream out.
#pragma once

#include <cstdint>
#include <string>

#include "engine/export/codec.h"
#include "engine/export/tflite.h"

namespace agilenn::exporting {

struct C99Device {
  std::string header, source;  // agilenn_device.h, agilenn_device.c
  int64_t arena_bytes = 0;
};

// `model` must be the int8 device half's graph: convolutions, one average pool, one fully
// connected layer, and the codes as CAST (int8 → uint8), CAST (→ int32), GATHER from a
// 256-entry table; anything else is an error naming the op.
C99Device device_c99(const tflite::ModelBuilder& model, int images, int local_logits, int codes,
                     const CodecModel& codec, const std::string& provenance);

}  // namespace agilenn::exporting
