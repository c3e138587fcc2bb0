/* Bare-metal start for QEMU's mps2-an500 board (a Cortex-M7): the vector table, and a reset
 * handler that copies .data, zeroes .bss, enables the FPU (the hard-float ABI uses it), runs
 * main and leaves through semihosting with main's verdict. */
#include <stdint.h>

#include "semihost.h"

extern uint32_t __data_load__, __data_start__, __data_end__, __bss_start__, __bss_end__, __stack_top__;
int main(void);

void agilenn_reset(void) {
  const uint32_t* from = &__data_load__;
  uint32_t* to;
  volatile uint32_t* const cpacr = (volatile uint32_t*)0xE000ED88u;
  for (to = &__data_start__; to < &__data_end__;) *to++ = *from++;
  for (to = &__bss_start__; to < &__bss_end__;) *to++ = 0;
  *cpacr |= 0xFu << 20; /* CP10 and CP11: full access */
  __asm__ volatile("dsb\n\tisb");
  semihost_exit(main() == 0);
}

static void agilenn_fault(void) {
  semihost_print("fault\n");
  semihost_exit(0);
}

/* Initial stack pointer, reset, then NMI, HardFault, MemManage, BusFault, UsageFault. */
__attribute__((section(".vectors"), used)) static void (*const vectors[8])(void) = {
    (void (*)(void))(uintptr_t)&__stack_top__, agilenn_reset, agilenn_fault, agilenn_fault,
    agilenn_fault, agilenn_fault, agilenn_fault, agilenn_fault};
