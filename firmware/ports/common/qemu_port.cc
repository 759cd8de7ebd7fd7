// The port of the QEMU boards (MPS2 AN386, MPS3 AN547): semihosting output and exit,
// SysTick at the processor clock (EDGEDISTILL_CPU_CLOCK_HZ, the board model's clock).
#include "port.h"
#include "semihosting.h"
#include "systick.h"
#include "tensorflow/lite/micro/cortex_m_generic/debug_log_callback.h"

#ifndef EDGEDISTILL_CPU_CLOCK_HZ
#error "EDGEDISTILL_CPU_CLOCK_HZ must be set by the board's board.mk"
#endif

namespace edgedistill {
namespace port {

void Init() {
  RegisterDebugLogCallback(semihosting::Write0);  // TFLM's MicroPrintf goes to the same output
  systick::Start();
}

void Write(const char* text) { semihosting::Write0(text); }

uint64_t Ticks() { return systick::Ticks(); }
uint32_t TicksPerSecond() { return EDGEDISTILL_CPU_CLOCK_HZ; }
const char* TickSource() { return "systick"; }

void Exit(int status) { semihosting::Exit(status == 0); }

}  // namespace port
}  // namespace edgedistill

extern "C" void edgedistill_port_fault(const char* what) {
  edgedistill::semihosting::Write0("\nerror=fault_");
  edgedistill::semihosting::Write0(what);
  edgedistill::semihosting::Write0("\nstatus=error\nEDGEDISTILL_RESULT_END\n");
  edgedistill::semihosting::Exit(false);
}
