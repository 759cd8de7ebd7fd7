// A 64-bit tick counter from SysTick at the processor clock (24-bit counter + wrap count).
#ifndef EDGEDISTILL_FIRMWARE_PORTS_COMMON_SYSTICK_H_
#define EDGEDISTILL_FIRMWARE_PORTS_COMMON_SYSTICK_H_

#include <cstdint>

namespace edgedistill {
namespace systick {

void Start();        // processor clock, full 24-bit reload, wrap interrupt on
uint64_t Ticks();    // monotonic, safe against a wrap between the two reads

}  // namespace systick
}  // namespace edgedistill

#endif  // EDGEDISTILL_FIRMWARE_PORTS_COMMON_SYSTICK_H_
