// Counter-based random numbers: a pure function of (seed, counter, index), so a mask is
// the same on every backend, every thread count, and after a resume.
#pragma once

#include <cstdint>

#include "kernels/shared/host_device.h"

namespace agilenn::kernels {

// SplitMix64 finaliser (Steele, Lea & Flood 2014): a bijective 64-bit mix.
AGILENN_HD uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Uniform in [0, 1) with 24 random bits, exact in float: decisions such as dropout's
// u < p are made in float on every backend.
AGILENN_HD float uniform01(uint64_t seed, uint64_t counter, uint64_t index) {
  const uint64_t h = mix64(mix64(seed ^ mix64(counter + 0x9e3779b97f4a7c15ULL)) + index);
  return static_cast<float>(h >> 40) * 0x1.0p-24f;
}

// Whether dropout with probability p drops element `index` of the mask at `counter`.
AGILENN_HD bool dropout_drops(uint64_t seed, uint64_t counter, uint64_t index, float p) {
  return uniform01(seed, counter, index) < p;
}

}  // namespace agilenn::kernels
