/* ARM semihosting (QEMU's -semihosting): print a string, stop with a verdict. */
#ifndef AGILENN_SEMIHOST_H
#define AGILENN_SEMIHOST_H

static inline int semihost_call(int op, const void* arg) {
  register int r0 __asm__("r0") = op;
  register const void* r1 __asm__("r1") = arg;
  __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

static inline void semihost_print(const char* s) { semihost_call(0x04, s); /* SYS_WRITE0 */ }

/* SYS_EXIT: ADP_Stopped_ApplicationExit (QEMU exits 0) or ADP_Stopped_RunTimeErrorUnknown (1). */
static inline void semihost_exit(int success) {
  semihost_call(0x18, (const void*)(success ? 0x20026u : 0x20023u));
  for (;;) {
  }
}

#endif
