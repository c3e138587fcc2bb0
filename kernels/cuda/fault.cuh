// Index faults found on the device. A GPU kernel cannot throw, so a kernel that meets an
// index outside its range records it in a slot in device memory (and writes a neutral
// value); the host takes it at its next synchronisation (Backend::take_fault) and the
// executor raises the error the CPU backend throws (Executor::check_faults).
#pragma once

#include <cstdint>

#include "kernels/shared/host_device.h"

namespace agilenn::cuda {

struct FaultSlot {
  unsigned long long node = 0;        // the faulting kernel's Node*; 0 when none
  unsigned long long key = ~0ull;     // position << 32 | uint32(value): the smallest wins
  long long node_id = -1;
  long long bound = 0;
};

// Where a kernel launched for one node reports: passed by value in the kernel's arguments.
struct FaultSite {
  FaultSlot* slot;
  unsigned long long node;
  long long node_id;
};

// The first faulting node in launch order keeps the slot; within its kernel, the smallest
// position (with the value found there). Positions past 2^32 - 1 are reported as that.
AGILENN_HD void report_bad_index(const FaultSite& site, int64_t position, int64_t value, int64_t bound) {
  const unsigned long long pos = position < 0xffffffffLL ? static_cast<unsigned long long>(position) : 0xffffffffull;
  const unsigned long long key = (pos << 32) | static_cast<uint32_t>(static_cast<int32_t>(value));
  FaultSlot* s = site.slot;
#ifdef __CUDA_ARCH__
  const unsigned long long held = atomicCAS(&s->node, 0ull, site.node);
  if (held != 0 && held != site.node) return;
  atomicMin(&s->key, key);
  s->node_id = site.node_id;  // every thread of this node writes the same two values
  s->bound = bound;
#else
  if (s->node != 0 && s->node != site.node) return;
  s->node = site.node;
  if (key < s->key) s->key = key;
  s->node_id = site.node_id;
  s->bound = bound;
#endif
}

}  // namespace agilenn::cuda
