// Host (Linux) port: stdout, CLOCK_MONOTONIC nanoseconds, exit().
#include <cstdio>
#include <cstdlib>
#include <ctime>

#include "port.h"

namespace edgedistill {
namespace port {

void Init() {}

void Write(const char* text) {
  std::fputs(text, stdout);
  std::fflush(stdout);
}

uint64_t Ticks() {
  timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<uint64_t>(now.tv_sec) * 1000000000u + static_cast<uint64_t>(now.tv_nsec);
}

uint32_t TicksPerSecond() { return 1000000000u; }
const char* TickSource() { return "clock_monotonic_ns"; }

void Exit(int status) { std::exit(status); }

}  // namespace port
}  // namespace edgedistill
