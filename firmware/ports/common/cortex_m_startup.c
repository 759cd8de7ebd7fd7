// Start-up code shared by the Cortex-M ports: vector table, reset handler, faults.
//
// The application has its own Reset_Handler (and links with -nostartfiles) rather than
// newlib's crt0: newlib's semihosting start-up (rdimon) asks the debugger for a heap and
// stack and moves the stack pointer there, which hard-faults on the Cortex-M55 QEMU board.
#include <stdint.h>

#ifdef __cplusplus  // also compiles as C++ (g++ treats .c as C++)
extern "C" {
#endif

extern uint32_t __data_load_start__, __data_start__, __data_end__;
extern uint32_t __bss_start__, __bss_end__;
extern uint32_t __stack_top__;

extern int main(void);
extern void __libc_init_array(void);
void edgedistill_port_fault(const char* what);  // in the board's port
void SysTick_Handler(void);                    // in the board's port

// newlib's __libc_init_array calls these (crti/crtn are not linked with -nostartfiles).
void _init(void) {}
void _fini(void) {}
// Normally from crtbegin.o: the handle static destructors register with __cxa_atexit.
// They never run (main does not return), but the symbol must exist.
void* __dso_handle = &__dso_handle;

void Reset_Handler(void);
void Reset_Handler(void) {
  // Enable the FPU (and MVE on Armv8.1-M): CP10 and CP11 full access.
  volatile uint32_t* cpacr = (volatile uint32_t*)0xE000ED88u;
  *cpacr |= (0xFu << 20);
  __asm volatile("dsb\n isb" ::: "memory");

  uint32_t* source = &__data_load_start__;
  for (uint32_t* target = &__data_start__; target < &__data_end__;) *target++ = *source++;
  for (uint32_t* target = &__bss_start__; target < &__bss_end__;) *target++ = 0;

  __libc_init_array();
  main();
  for (;;) {
  }
}

static void NMI_Handler(void) { edgedistill_port_fault("nmi"); }
static void HardFault_Handler(void) { edgedistill_port_fault("hard_fault"); }
static void MemManage_Handler(void) { edgedistill_port_fault("mem_manage"); }
static void BusFault_Handler(void) { edgedistill_port_fault("bus_fault"); }
static void UsageFault_Handler(void) { edgedistill_port_fault("usage_fault"); }
static void Default_Handler(void) { edgedistill_port_fault("unexpected_interrupt"); }

typedef void (*Handler)(void);

__attribute__((section(".vectors"), used)) const Handler g_vector_table[16 + 32] = {
    (Handler)&__stack_top__,
    Reset_Handler,
    NMI_Handler,
    HardFault_Handler,
    MemManage_Handler,
    BusFault_Handler,
    UsageFault_Handler,
    0, 0, 0, 0,  // reserved (SecureFault on Armv8-M is unused here)
    Default_Handler,  // SVCall
    Default_Handler,  // DebugMonitor
    0,
    Default_Handler,  // PendSV
    SysTick_Handler,
    // External interrupts: none enabled; any that fires is reported as a fault.
    Default_Handler, Default_Handler, Default_Handler, Default_Handler, Default_Handler, Default_Handler,
    Default_Handler, Default_Handler, Default_Handler, Default_Handler, Default_Handler, Default_Handler,
    Default_Handler, Default_Handler, Default_Handler, Default_Handler, Default_Handler, Default_Handler,
    Default_Handler, Default_Handler, Default_Handler, Default_Handler, Default_Handler, Default_Handler,
    Default_Handler, Default_Handler, Default_Handler, Default_Handler, Default_Handler, Default_Handler,
    Default_Handler, Default_Handler,
};

#ifdef __cplusplus
}  // extern "C"
#endif
