/* Runs the exported C99 device half on the test images of cases.h (written by
 * tools/run-mcu.py with what the host build of the same sources gives) and reports through
 * semihosting, one line each: "image I ok" or "image I differs", the instructions one image
 * takes (SysTick under qemu -icount, calibrated on a loop of known length) and the stack the
 * device half used (the stack is painted before the runs). */
#include <stdint.h>
#include <string.h>

#include "agilenn_device.h"
#include "cases.h"
#include "semihost.h"

extern uint32_t __bss_end__;

#define SYST_CSR (*(volatile uint32_t*)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t*)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t*)0xE000E018u)
#define PAINT 0xA5A5A5A5u

static int8_t logits[AGILENN_DEVICE_CLASSES];
static uint8_t codes[AGILENN_DEVICE_CODES];
static uint8_t stream[AGILENN_DEVICE_STREAM_BOUND];

static void print_number(const char* label, uint32_t v, const char* unit) {
  char digits[12], line[96];
  int n = 0;
  size_t at = strlen(label);
  memcpy(line, label, at);
  do {
    digits[n++] = (char)('0' + v % 10u);
    v /= 10u;
  } while (v != 0u);
  while (n > 0) line[at++] = digits[--n];
  memcpy(line + at, unit, strlen(unit) + 1);
  semihost_print(line);
}

/* SysTick counts down from 2^24 - 1 at the processor clock; qemu -icount ties that clock to
 * executed instructions. */
static uint32_t ticks_since(uint32_t start) { return (start - SYST_CVR) & 0xFFFFFFu; }

static uint32_t stack_pointer(void) {
  uint32_t sp;
  __asm__ volatile("mov %0, sp" : "=r"(sp));
  return sp;
}

int main(void) {
  uint32_t i, start, loop_ticks, run_ticks = 0, sp;
  uint32_t* p;
  int failures = 0;
  SYST_RVR = 0xFFFFFFu;
  SYST_CVR = 0u;
  SYST_CSR = 5u; /* enabled, processor clock */

  /* 2 instructions per iteration (subs, bne): 2,000,000 instructions. */
  start = SYST_CVR;
  __asm__ volatile("ldr r0, =1000000\n1:\n\tsubs r0, r0, #1\n\tbne 1b" ::: "r0", "cc");
  loop_ticks = ticks_since(start);

  sp = stack_pointer();
  for (p = &__bss_end__; (uint32_t)(uintptr_t)p < sp - 32u; ++p) *p = PAINT;

  for (i = 0; i < AGILENN_CASES; ++i) {
    size_t n;
    start = SYST_CVR;
    n = agilenn_device_run(case_images[i], logits, codes, stream, sizeof(stream));
    run_ticks += ticks_since(start);
    if (n == case_stream_bytes[i] && memcmp(logits, case_logits[i], sizeof(logits)) == 0 &&
        memcmp(codes, case_codes[i], sizeof(codes)) == 0 && memcmp(stream, case_streams[i], n) == 0) {
      print_number("image ", i, " ok\n");
    } else {
      print_number("image ", i, " differs\n");
      ++failures;
    }
  }
  for (p = &__bss_end__; *p == PAINT; ++p) {
  }
  print_number("stack ", sp - (uint32_t)(uintptr_t)p, " bytes below main's frame\n");
  if (loop_ticks > 0u)
    print_number("instructions per image ",
                 (uint32_t)((uint64_t)run_ticks * 2000000u / loop_ticks / AGILENN_CASES), "\n");
  return failures;
}
