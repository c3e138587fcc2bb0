// Counter-based random numbers: a pure function of (seed, counter, index), so a mask is
// the same on every backend, every thread count, and after a resume.
#pragma once

#include <cstdint>

#include "kernels/cuda/host_device.h"

namespace agilenn {

// SplitMix64 finaliser (Steele, Lea & Flood 2014): a bijective 64-bit mix.
AGILENN_HD uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Uniform in [0, 1) with 53 random bits.
AGILENN_HD double uniform01(uint64_t seed, uint64_t counter, uint64_t index) {
  const uint64_t h = mix64(mix64(seed ^ mix64(counter + 0x9e3779b97f4a7c15ULL)) + index);
  return static_cast<double>(h >> 11) * 0x1.0p-53;
}

}  // namespace agilenn
