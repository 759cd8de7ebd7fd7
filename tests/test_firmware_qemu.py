"""The QEMU ports with the real toolchain and the real qemu-system-arm, without TFLM.

A bare-metal program built from the ports' start-up code, SysTick counter and semihosting
times a loop of a known number of instructions. Under `-icount shift=0` the tick count
converted with the board table's clock must give that instruction count: this checks the
clock figures in the boards table, the SysTick wrap handling and the command line.
"""

from __future__ import annotations

import re

import pytest

from edgedistill.errors import StageError
from edgedistill.firmware.boards import BOARDS
from edgedistill.firmware.qemu import instructions_per_invoke, qemu_command, run_command
from firmware_helpers import build_bare_metal, needs_cross_toolchain, needs_qemu

pytestmark = [needs_cross_toolchain, needs_qemu]


@pytest.mark.parametrize(
    "board, iterations",
    [
        ("qemu-mps2-an386", 1_000_000),
        # 800 M instructions = 25.6 M SysTick ticks at 32 MHz: crosses the 24-bit counter's wrap.
        ("qemu-mps3-an547", 400_000_000),
    ],
)
def test_systick_under_icount_counts_instructions(tmp_path, board, iterations):
    spec = BOARDS[board]
    elf = build_bare_metal(tmp_path, board, iterations=iterations)
    ran = run_command(qemu_command(spec, elf), timeout_seconds=120, what="QEMU")
    assert ran.returncode == 0, ran.output  # semihosting SYS_EXIT(success) ends QEMU with 0
    loop = int(re.search(r"loop_instructions=(\d+)", ran.output).group(1))
    ticks = int(re.search(r"ticks=(\d+)", ran.output).group(1))
    measured = instructions_per_invoke(ticks, spec.cpu_clock_hz)
    # The loop plus the two Ticks() calls around it: within one tick (clock/1e9 instructions) + 64.
    assert loop <= measured <= loop + 1e9 / spec.cpu_clock_hz + 64, (loop, measured)


def test_a_hanging_firmware_times_out_in_real_qemu(tmp_path):
    elf = build_bare_metal(tmp_path, "qemu-mps2-an386", hang=True)
    with pytest.raises(StageError, match="did not finish within 2 s"):
        run_command(qemu_command(BOARDS["qemu-mps2-an386"], elf), timeout_seconds=2, what="QEMU (mps2-an386)")
