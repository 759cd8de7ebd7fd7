#include "systick.h"

namespace {

struct SysTickRegisters {
  volatile uint32_t ctrl;  // SYST_CSR
  volatile uint32_t load;  // SYST_RVR
  volatile uint32_t val;   // SYST_CVR
  volatile uint32_t calib;
};

SysTickRegisters* const kSysTick = reinterpret_cast<SysTickRegisters*>(0xE000E010u);
constexpr uint32_t kReload = 0x00FFFFFFu;
constexpr uint32_t kEnable = 1u << 0, kTickInterrupt = 1u << 1, kProcessorClock = 1u << 2;
volatile uint32_t wraps = 0;

}  // namespace

extern "C" void SysTick_Handler(void) { wraps = wraps + 1; }

namespace edgedistill {
namespace systick {

void Start() {
  kSysTick->ctrl = 0;
  kSysTick->load = kReload;
  kSysTick->val = 0;
  kSysTick->ctrl = kEnable | kTickInterrupt | kProcessorClock;
  // The write above left the current value at 0; the counter loads kReload on the next
  // clock edge without a wrap interrupt. Wait for that (bounded), or the first reading
  // would be a whole period ahead of the later ones.
  for (int spins = 0; kSysTick->val == 0 && spins < 1000000; ++spins) {
  }
}

uint64_t Ticks() {
  uint32_t before, value, after;
  do {
    before = wraps;
    value = kSysTick->val;  // counts down
    after = wraps;
  } while (before != after);
  return (static_cast<uint64_t>(before) << 24) + (kReload - value);
}

}  // namespace systick
}  // namespace edgedistill
