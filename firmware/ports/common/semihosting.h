// Arm semihosting calls (BKPT 0xAB on M-profile). QEMU serves them with
// `-semihosting-config enable=on,target=native`; on a board without a debugger attached
// they would halt the core, so only the QEMU ports use them.
#ifndef EDGEDISTILL_FIRMWARE_PORTS_COMMON_SEMIHOSTING_H_
#define EDGEDISTILL_FIRMWARE_PORTS_COMMON_SEMIHOSTING_H_

#include <cstdint>

namespace edgedistill {
namespace semihosting {

constexpr uint32_t kSysWrite0 = 0x04;
constexpr uint32_t kSysExit = 0x18;
constexpr uint32_t kApplicationExit = 0x20026;  // ADP_Stopped_ApplicationExit: QEMU exits 0
constexpr uint32_t kRunTimeError = 0x20023;     // ADP_Stopped_RunTimeErrorUnknown: QEMU exits 1

inline uint32_t Call(uint32_t operation, const void* argument) {
  register uint32_t r0 __asm__("r0") = operation;
  register const void* r1 __asm__("r1") = argument;
  __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

inline void Write0(const char* text) { Call(kSysWrite0, text); }

// 32-bit semihosting SYS_EXIT takes the reason code itself, not a pointer to a block.
[[noreturn]] inline void Exit(bool success) {
  Call(kSysExit, reinterpret_cast<const void*>(success ? kApplicationExit : kRunTimeError));
  for (;;) {
  }
}

}  // namespace semihosting
}  // namespace edgedistill

#endif  // EDGEDISTILL_FIRMWARE_PORTS_COMMON_SEMIHOSTING_H_
