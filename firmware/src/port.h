// What a board port provides to the runner (firmware/ports/<board>/).
//
// A port sets up clocks, the tick counter and the text output, as TFLM ports replace
// debug_log.cc and micro_time.cc.
#ifndef EDGEDISTILL_FIRMWARE_SRC_PORT_H_
#define EDGEDISTILL_FIRMWARE_SRC_PORT_H_

#include <cstdint>

namespace edgedistill {
namespace port {

// Called first in main(): clocks, tick counter, output.
void Init();

// Writes a NUL-terminated string to the board's text output (no newline added).
void Write(const char* text);

// A monotonic tick counter and its rate. On the QEMU boards this is SysTick at the
// processor clock; with `-icount shift=0` QEMU's virtual time advances 1 ns per
// instruction, so ticks convert to instructions, not to real cycles.
uint64_t Ticks();
uint32_t TicksPerSecond();
const char* TickSource();

// Ends the program with an exit status (0 = pass); returns only on boards that cannot exit.
void Exit(int status);

}  // namespace port
}  // namespace edgedistill

#endif  // EDGEDISTILL_FIRMWARE_SRC_PORT_H_
