// NUCLEO-F446RE port: output on USART2 (PA2, AF7), which the on-board ST-LINK exposes as a
// virtual COM port (115200 8N1); SysTick at the 16 MHz HSI clock the chip resets to.
// UNTESTED ON HARDWARE: built in this workplace, never run on a board.
#include <cstdint>

#include "port.h"
#include "systick.h"
#include "tensorflow/lite/micro/cortex_m_generic/debug_log_callback.h"

namespace {

constexpr uint32_t kCpuClockHz = EDGEDISTILL_CPU_CLOCK_HZ;
constexpr uint32_t kBaudRate = 115200;

volatile uint32_t& Register(uint32_t address) { return *reinterpret_cast<volatile uint32_t*>(address); }

// RM0390 (STM32F446xx reference manual) register addresses.
constexpr uint32_t kRccAhb1Enr = 0x40023800u + 0x30u;
constexpr uint32_t kRccApb1Enr = 0x40023800u + 0x40u;
constexpr uint32_t kGpioAModer = 0x40020000u + 0x00u;
constexpr uint32_t kGpioAAfrl = 0x40020000u + 0x20u;
constexpr uint32_t kUsart2Sr = 0x40004400u + 0x00u;
constexpr uint32_t kUsart2Dr = 0x40004400u + 0x04u;
constexpr uint32_t kUsart2Brr = 0x40004400u + 0x08u;
constexpr uint32_t kUsart2Cr1 = 0x40004400u + 0x0Cu;

void UartInit() {
  Register(kRccAhb1Enr) |= 1u << 0;    // GPIOA clock
  Register(kRccApb1Enr) |= 1u << 17;   // USART2 clock
  Register(kGpioAModer) = (Register(kGpioAModer) & ~(3u << 4)) | (2u << 4);  // PA2 alternate function
  Register(kGpioAAfrl) = (Register(kGpioAAfrl) & ~(0xFu << 8)) | (7u << 8);  // AF7 = USART2_TX
  // Oversampling by 16: BRR = fCK / baud, rounded (mantissa and 4-bit fraction in one value).
  Register(kUsart2Brr) = (kCpuClockHz + kBaudRate / 2) / kBaudRate;
  Register(kUsart2Cr1) = (1u << 13) | (1u << 3);  // UE, TE
}

void UartWrite(const char* text) {
  for (; *text; ++text) {
    if (*text == '\n') {
      while (!(Register(kUsart2Sr) & (1u << 7))) {
      }
      Register(kUsart2Dr) = '\r';
    }
    while (!(Register(kUsart2Sr) & (1u << 7))) {  // TXE
    }
    Register(kUsart2Dr) = static_cast<uint8_t>(*text);
  }
  while (!(Register(kUsart2Sr) & (1u << 6))) {  // TC: the last byte has left
  }
}

}  // namespace

namespace edgedistill {
namespace port {

void Init() {
  UartInit();
  RegisterDebugLogCallback(UartWrite);
  systick::Start();
}

void Write(const char* text) { UartWrite(text); }
uint64_t Ticks() { return systick::Ticks(); }
uint32_t TicksPerSecond() { return kCpuClockHz; }
const char* TickSource() { return "systick"; }

void Exit(int status) {
  (void)status;  // a board has nowhere to exit to: stay here, the result block is printed
  for (;;) {
    __asm__ volatile("wfi");
  }
}

}  // namespace port
}  // namespace edgedistill

extern "C" void edgedistill_port_fault(const char* what) {
  UartWrite("\nerror=fault_");
  UartWrite(what);
  UartWrite("\nstatus=error\nEDGEDISTILL_RESULT_END\n");
  for (;;) {
  }
}
